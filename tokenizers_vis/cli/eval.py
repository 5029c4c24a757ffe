"""`vistok eval`: rFID / gFID offline, reconstruction metrics, token-count sweeps, JPEG / WebP.

    vistok eval tokenizer --model DIR|NAME --data SPEC [--split test] [--num-images N]
        [--batch-size B] [--ks 1,2,4] [--codecs jpeg,webp|none] [--qualities 5,50,90]
        [--no-fid] [--perceptual inception|lpips_vgg|auto|none] [--refine-steps N] [--num-steps S]
        [--out DIR] [--seed S] [--device auto|cpu|cuda] [--precision auto|bf16|fp32]
        [--cache-dir DIR] [--no-codec-cache] [--quiet]
    vistok eval generator --samples DIR|FILE.npz --data SPEC [--split test] [--num-images N]
        [--size S] [--batch-size B] [--out DIR] [--seed S] [--device D] [--cache-dir DIR]

The field's suite (FID / rFID, sFID, Inception Score, precision / recall, KID; ADM's evaluator)
under a named protocol, streaming and resumable:
    vistok eval reference --data folder:DIR|SPEC|FILE.npz -o ref.npz [--protocol imagenet256]
        [--size S] [--split test] [--num-images N]
    vistok eval tokenizer --protocol imagenet256 --model M --data folder:DIR [--ks ..]
    vistok eval generator --protocol imagenet256 --reference ref.npz --samples FILE.npz|DIR

A thin layer over `tokenizers_vis.evaluation` (evaluate_tokenizer / evaluate_generator, then
write_report); see that module for what is measured and how. User mistakes print one line on
stderr and exit with status 2. Nothing is written until every number is computed, and then each
file atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from tokenizers_vis.cli.common import (
    ArgumentParser,
    add_limit_flags,
    int_list,
    limits_from_args,
    non_negative,
    positive,
    run,
)
from tokenizers_vis.errors import UsageError
from tokenizers_vis.evaluation import (
    EvaluationError,
    evaluate_generator,
    evaluate_tokenizer,
    write_report,
)
from tokenizers_vis.evaluation.inputs import PERCEPTUAL_KINDS
from tokenizers_vis.evaluation.report import equal_bytes_section, main_table
from tokenizers_vis.precision import PRECISIONS


def output_dir(out: Path | None, *parts: str) -> Path:
    slug = "_".join(Path(p).name or p for p in parts).replace(":", "-")
    out = out if out is not None else Path("out") / "eval" / slug  # out/ is git-ignored
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out {out} exists and is not a directory")
    return out


def write(result, out: Path) -> list[Path]:
    try:
        return write_report(result, out)
    except OSError as err:  # e.g. a read-only or full disk: nothing half-written, say where
        raise EvaluationError(f"--out {out}: cannot write: {err}") from None


def _suite_written(result, out: Path, args: argparse.Namespace) -> int:
    from tokenizers_vis.evaluation.suite_report import suite_table, write_suite_report

    result.meta["command"] = "vistok eval " + " ".join(args.argv)
    try:
        written = write_suite_report(result, out)
    except OSError as err:
        raise EvaluationError(f"--out {out}: cannot write: {err}") from None
    report = result.to_dict()
    print(
        f"protocol {report['protocol']['name']}, extractor sha1 "
        f"{result.meta['extractor']['sha1']}, {result.meta['images']} images "
        f"({result.meta['failed']} unreadable)"
    )
    print(suite_table(report))
    for note in sorted({r["notes"] for r in result.rows if r.get("notes")}):
        print(f"note: {note}")
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0


def cmd_tokenizer_suite(args: argparse.Namespace) -> int:
    from tokenizers_vis.evaluation.suite_api import evaluate_tokenizer_suite

    out = output_dir(args.out, args.model, args.protocol, Path(args.data).name)
    result = evaluate_tokenizer_suite(
        args.model,
        args.data,
        protocol=args.protocol,
        split=args.split,
        num_images=args.num_images,
        ks=args.ks,
        num_steps=args.num_steps,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
        cache_dir=args.cache_dir,
        use_cache=not args.no_feature_cache,
        progress=not args.quiet,
        limits=limits_from_args(args),
    )
    return _suite_written(result, out, args)


def cmd_reference(args: argparse.Namespace) -> int:
    from tokenizers_vis.evaluation.suite_api import make_reference

    if args.output.exists() and args.output.is_dir():
        raise EvaluationError(f"-o {args.output} is a directory; name the .npz file to write")
    if not args.output.parent.is_dir():
        raise EvaluationError(f"-o {args.output}: folder {args.output.parent} does not exist")
    result = make_reference(
        args.data,
        args.output,
        protocol=args.protocol,
        split=args.split,
        size=args.size,
        num_images=args.num_images,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
        use_cache=not args.no_feature_cache,
        progress=not args.quiet,
        command="vistok eval " + " ".join(args.argv),
    )
    meta = result.meta
    print(
        f"wrote {args.output}: {meta['images']} images ({meta['failed']} unreadable), "
        f"protocol {meta['protocol']['name']}, extractor sha1 {meta['extractor']['sha1']}"
    )
    return 0


def cmd_tokenizer(args: argparse.Namespace) -> int:
    if args.protocol:
        return cmd_tokenizer_suite(args)
    out = output_dir(args.out, args.model, args.data.split(":")[0], args.split)
    result = evaluate_tokenizer(
        args.model,
        args.data,
        split=args.split,
        num_images=args.num_images,
        ks=args.ks,
        codecs=args.codecs,
        qualities=args.qualities,
        fid=not args.no_fid,
        perceptual=args.perceptual,
        refine_steps=args.refine_steps,
        refine_lr=args.refine_lr,
        num_steps=args.num_steps,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
        cache_dir=args.cache_dir,
        codec_cache=not args.no_codec_cache,
        progress=not args.quiet,
        limits=limits_from_args(args),
    )
    result.meta["command"] = "vistok eval " + " ".join(args.argv)
    written = write(result, out)
    report = result.to_dict()
    print(main_table(report))
    if result.codecs:
        print("\nAt equal bytes:\n" + equal_bytes_section(report))
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0


def cmd_generator_suite(args: argparse.Namespace) -> int:
    from tokenizers_vis.evaluation.suite_api import evaluate_generator_suite

    if args.reference is None:
        raise EvaluationError("--protocol needs --reference ref.npz (see vistok eval reference)")
    out = output_dir(args.out, args.samples.stem, args.protocol or "suite")
    result = evaluate_generator_suite(
        args.samples,
        args.reference,
        protocol=args.protocol,
        num_images=args.num_images,
        size=args.size,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        cache_dir=args.cache_dir,
        use_cache=not args.no_feature_cache,
        progress=not args.quiet,
    )
    return _suite_written(result, out, args)


def cmd_generator(args: argparse.Namespace) -> int:
    if args.protocol or args.reference is not None:
        return cmd_generator_suite(args)
    if args.data is None:
        raise EvaluationError("give --data SPEC, or --reference ref.npz for the suite")
    out = output_dir(args.out, args.samples.stem, args.data.split(":")[0], args.split)
    result = evaluate_generator(
        args.samples,
        args.data,
        split=args.split,
        num_images=args.num_images,
        size=args.size,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    result.meta["command"] = "vistok eval " + " ".join(args.argv)
    written = write(result, out)
    print(f"gFID {result.gfid:.3f}  KID {result.kid_mean:.5f} +- {result.kid_std:.5f}")
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0


def _protocol_options(p: argparse.ArgumentParser) -> None:
    from tokenizers_vis.evaluation.protocol import PROTOCOLS

    p.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        help="a published protocol: imagenet256 = ADM's center crop to 256 px and ADM's suite "
        "(FID, sFID, IS, precision / recall), every image of folder:DIR, streamed and resumable",
    )
    p.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="with --protocol: keep no per-batch features on disk (no resume after interruption)",
    )


def _common(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    p.add_argument(
        "--data",
        required=data_required,
        help="data spec: emoji, photos, folder:DIR, shards:..",
    )
    p.add_argument("--split", default="test", help="split of --data (default: test)")
    p.add_argument("--num-images", type=positive, help="first N images of the split (default all)")
    p.add_argument("--batch-size", type=positive, default=32, help="images per batch")
    p.add_argument("--out", type=Path, help="output folder (default out/eval/<run name>)")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling decoders and KID subsets")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="caches: DIR/fid_reference (features of the originals), DIR/codec_baselines "
        "(JPEG / WebP rows); default: vistok's cache folder",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="vistok eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{tokenizer,generator,reference}"
    )
    tok = sub.add_parser("tokenizer", help="rFID, PSNR, SSIM, ... per token count, vs JPEG / WebP")
    tok.add_argument("--model", required=True, help="pretrained directory or shipped name")
    _common(tok)
    tok.add_argument("--ks", type=int_list, help="token counts (default 1,2,4,...,K)")
    tok.add_argument("--codecs", default="jpeg,webp", help="baselines: jpeg, webp or none")
    tok.add_argument("--qualities", type=int_list, help="codec qualities (default: all)")
    tok.add_argument("--no-fid", action="store_true", help="skip rFID / KID (fast)")
    tok.add_argument(
        "--refine-steps",
        type=non_negative,
        default=0,
        help="encoder-side refinement steps per batch (slower encode, same bytes; default 0)",
    )
    tok.add_argument("--refine-lr", type=float, default=0.1, help="refinement step size")
    tok.add_argument(
        "--num-steps", type=positive, help="sampling decoders' steps (default: the model's)"
    )
    tok.add_argument(
        "--no-codec-cache", action="store_true", help="recompute JPEG / WebP rows, cache nothing"
    )
    tok.add_argument(
        "--perceptual", choices=PERCEPTUAL_KINDS, default="inception", help="perceptual distance"
    )
    tok.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto (default): bf16 only where the hardware runs it natively, else fp32",
    )
    _protocol_options(tok)
    add_limit_flags(tok)
    tok.set_defaults(func=cmd_tokenizer)
    gen = sub.add_parser("generator", help="gFID / KID of samples against a data split")
    gen.add_argument("--samples", type=Path, required=True, help="folder of images or .npz")
    _common(gen, data_required=False)
    gen.add_argument("--size", type=positive, help="reference image size (default: samples')")
    gen.add_argument("--reference", type=Path, help="ADM-style reference .npz (the suite)")
    _protocol_options(gen)
    gen.set_defaults(func=cmd_generator)
    ref = sub.add_parser("reference", help="write an ADM-style reference .npz from any data")
    _common(ref)
    ref.add_argument("-o", "--output", type=Path, required=True, help="the .npz to write")
    ref.add_argument("--size", type=positive, help="image size for a data spec without protocol")
    _protocol_options(ref)
    ref.set_defaults(func=cmd_reference, out=None)
    return parser


def evaluate(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except torch.OutOfMemoryError:  # a batch too large for the device is the user's to change
        raise UsageError(
            f"out of memory on {args.device} at --batch-size {args.batch_size}; lower it"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Run `vistok eval ...`; returns the exit status (2 for user mistakes)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(lambda: evaluate(argv), "vistok eval")


if __name__ == "__main__":
    raise SystemExit(main())
