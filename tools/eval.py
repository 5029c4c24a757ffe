"""`vistok eval`: rFID / gFID offline, reconstruction metrics, token-count sweeps, JPEG / WebP.

    vistok eval tokenizer --model DIR|NAME --data SPEC [--split test] [--num-images N]
        [--batch-size B] [--ks 1,2,4] [--codecs jpeg,webp|none] [--qualities 5,50,90]
        [--no-fid] [--perceptual inception|lpips_vgg|auto|none] [--out DIR] [--seed S]
        [--device auto|cpu|cuda] [--cache-dir DIR] [--no-codec-cache] [--quiet]
    vistok eval generator --samples DIR|FILE.npz --data SPEC [--split test] [--num-images N]
        [--size S] [--batch-size B] [--out DIR] [--seed S] [--device D] [--cache-dir DIR]

tokenizer: the first N images of a split are encoded once (K tokens; `encode(num_tokens=k)` is
that prefix) and decoded from every prefix k of the sweep (default 1, 2, 4, ..., K). Each k is
scored against the originals: rFID and KID (TF-Inception features; the originals' features are
cached on disk), PSNR, SSIM, MS-SSIM, a perceptual distance (its name is in the report), and its
rate, ``k * sum_g log2(vocab_g) / 8`` bytes per image. The same images also go through Pillow
JPEG and WebP at every quality (whole files, headers included; see ``metrics.rate``) and get the
same metrics, so the report puts the tokenizer's rate-distortion curve beside both codecs, with
the codec quality whose bytes are nearest each k. Codebook usage per position is for k = K.
Codec rows do not depend on the tokenizer, so they are cached on disk (keyed by the image bytes,
codec library versions and metric code) and a second checkpoint on the same split skips them.

generator: gFID / KID of samples (a folder of images, or an .npz holding one uint8 array
(n, h, w, 3) or (n, 3, h, w)) against the first N images of a split at the samples' size.

Deterministic for a fixed seed and batch size (the seed drives sampling decoders and KID subsets).
User mistakes print one line on stderr and exit with status 2. Nothing is written until every
number is computed, and then each file atomically (see ``tools.eval_report``).
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tools import eval_report
from tools.eval_inputs import (
    PERCEPTUAL_KINDS,
    CodecCache,
    UsageError,
    canonical_spec,
    codec_plan,
    int_list,
    load_extractor,
    load_model,
    load_perceptual,
    load_samples,
    load_split,
    needs_inception,
    non_negative,
    output_dir,
    pick_device,
    positive,
    sweep_ks,
)

# ---------------------------------------------------------------------------------------------
# Scoring

KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # fid_kid's defaults (Binkowski et al.'s 100 x 1000)


def batches(images: Tensor, batch_size: int) -> Iterator[tuple[slice, Tensor]]:
    """(index slice, (b, 3, h, w) float in [-1, 1]) over uint8 images."""
    from tokenizers_vis.data.transforms import to_tensor

    for start in range(0, images.shape[0], batch_size):
        part = images[start : start + batch_size]  # (b 3 h w) uint8
        floats = torch.stack([to_tensor(x.permute(1, 2, 0)) for x in part])  # (b 3 h w)
        yield slice(start, start + part.shape[0]), floats


def kid_subsets(num_real: int, num_fake: int) -> int:
    """KID's number of random subsets: the usual 100, or 1 when every subset is the whole set.

    Subsets hold min(KID_SUBSET_SIZE, n_real, n_fake) features; when both sides have exactly that
    many, each "random subset" is a permutation of all of them, and the MMD estimate does not
    depend on order. One subset then gives the same mean (and std 0, as 100 would) 100x faster.
    """
    return 1 if num_real == num_fake <= KID_SUBSET_SIZE else KID_SUBSETS


class Scorer:
    """Scores reconstructions of one fixed image set against its originals."""

    def __init__(
        self,
        images: Tensor,
        batch_size: int,
        device: torch.device,
        extractor: nn.Module | None,
        reference: Tensor | None,
        perceptual: nn.Module | None,
        seed: int,
        quiet: bool,
    ) -> None:
        self.images, self.batch_size, self.device = images, batch_size, device
        self.extractor, self.reference, self.seed, self.quiet = extractor, reference, seed, quiet
        self.perceptual = perceptual.to(device) if perceptual is not None else None

    def score(self, reconstruct, desc: str) -> dict[str, float]:
        """Metrics of ``reconstruct(index, x) -> (recon (b, 3, h, w), bytes (b,) | None)``."""
        from tokenizers_vis.metrics import ReconstructionMeter, extract_features, fid_kid

        meter, features, sizes = ReconstructionMeter(self.perceptual), [], []
        total = -(-self.images.shape[0] // self.batch_size)
        parts = batches(self.images, self.batch_size)
        for index, x in tqdm(parts, desc=desc, total=total, leave=False, disable=self.quiet):
            recon, size = reconstruct(index, x)
            recon, x = recon.to(self.device), x.to(self.device)
            meter.update(recon, x)
            if size is not None:
                sizes.append(size.double())
            if self.extractor is not None:
                features.append(extract_features([recon], self.extractor, progress=False))
        out = meter.compute()
        if sizes:
            out["bytes_per_image"] = torch.cat(sizes).mean().item()
        if self.extractor is not None:
            fake = torch.cat(features)  # (n 2048)
            subsets = kid_subsets(self.reference.shape[0], fake.shape[0])
            stats = fid_kid(self.reference, fake, kid_subsets=subsets, seed=self.seed)
            out.update(rfid=stats["fid"], kid_mean=stats["kid_mean"], kid_std=stats["kid_std"])
        return out


def reference(args: argparse.Namespace, spec: str, images: Tensor, extractor, device) -> Tensor:
    """Features of the originals, from the on-disk cache when the same split was seen before."""
    from tokenizers_vis.metrics import reference_features

    gen = (x for _, x in batches(images, args.batch_size))  # only read on a cache miss
    return reference_features(
        gen,
        extractor,
        dataset=spec,
        split=args.split,
        image_size=images.shape[-1],
        num_images=images.shape[0],
        cache_dir=args.cache_dir and cache_path(args.cache_dir, "fid_reference"),
        device=device,
        progress=not args.quiet,
    )


def _decode_prefix(tok, ids: Tensor, k: int, seed: int, index: slice, x: Tensor):
    from tokenizers_vis import Tokens

    device = next(tok.parameters()).device
    # Seeded per batch: sampling decoders (rectified flow) repeat exactly for a fixed seed.
    gen = torch.Generator(device).manual_seed(seed + index.start)
    return tok.decode(Tokens(ids[index, :k].to(device)), generator=gen), None  # (b 3 h w)


def _codec_roundtrip(codec: str, quality: int, index: slice, x: Tensor):
    from tokenizers_vis.metrics import codec_roundtrip

    point = codec_roundtrip(x, codec, quality)
    return point.images, point.bytes_per_image  # (b 3 h w), (b,)


def encode_all(
    tok,
    images: Tensor,
    batch_size: int,
    quiet: bool,
    refine_steps: int = 0,
    refine_lr: float = 0.1,
) -> Tensor:
    """Ids of all K tokens of every image, (n, K, g) int64 on CPU; a prefix is any k.

    `refine_steps` > 0: encoder-side refinement (`tokenizers_vis.refine`) over the prefixes
    1, 2, 4, .., K, the default sweep.
    """
    from tokenizers_vis.refine import refine_tokens

    device = next(tok.parameters()).device
    total = -(-images.shape[0] // batch_size)
    parts = tqdm(batches(images, batch_size), desc="encode", total=total, disable=quiet)

    def encode(x: Tensor) -> Tensor:
        if refine_steps:
            return refine_tokens(tok, x, steps=refine_steps, lr=refine_lr).ids
        return tok.encode(x).ids

    return torch.cat([encode(x.to(device)).cpu() for _, x in parts])  # (n K g)


def sweep_tokens(tok, ids: Tensor, ks: list[int], scorer: Scorer, seed: int) -> list[dict]:
    """One row per k: rate and every metric of the k-token reconstructions."""
    from tokenizers_vis.metrics import bits_per_token

    bits = bits_per_token(tok.vocab_sizes)
    rows = []
    for k in tqdm(ks, desc="token counts", disable=scorer.quiet):
        decode = functools.partial(_decode_prefix, tok, ids, k, seed)
        row = {"k": k, "bits_per_image": k * bits, "bytes_per_image": k * bits / 8}
        rows.append({**row, **scorer.score(decode, f"k={k}")})
    return rows


def sweep_codecs(
    plan: dict[str, list[int]], scorer: Scorer, cache: CodecCache
) -> dict[str, list[dict]]:
    """Codec name -> one row per quality, with the mean whole-file bytes per image."""
    out = {}
    for codec, qualities in plan.items():
        rows = []
        for q in tqdm(qualities, desc=f"{codec} qualities", disable=scorer.quiet):
            row = cache.get(codec, q)
            if row is None:
                roundtrip = functools.partial(_codec_roundtrip, codec, q)
                row = {"quality": q, **scorer.score(roundtrip, f"{codec} q={q}")}
                cache.put(codec, q, row)
            rows.append(row)
        out[codec] = rows
    return out


def reconstruction_rows(tok, ids: Tensor, images: Tensor, ks: list[int], seed: int, count: int = 8):
    """(label, (b, 3, h, w) in [-1, 1]) rows for the grid: the originals, then one per k."""
    index = slice(0, min(count, images.shape[0]))
    originals = next(batches(images[index], count))[1]
    rows = [("original", originals)]
    for k in ks:
        rows.append((f"k={k}", _decode_prefix(tok, ids, k, seed, index, originals)[0].cpu()))
    return rows


# ---------------------------------------------------------------------------------------------
# Commands


def cache_path(root: Path | None, name: str) -> Path:
    from tokenizers_vis.layers.inception import vistok_cache_dir

    return (root if root is not None else vistok_cache_dir()) / name


def write_outputs(out: Path, files: dict[str, bytes]) -> list[Path]:
    try:
        return eval_report.write_files(out, files)
    except OSError as err:  # e.g. a read-only or full disk: nothing half-written, say where
        raise UsageError(f"--out {out}: cannot write: {err}") from None


def run_meta(args: argparse.Namespace, spec: str, n: int, device, extractor, start) -> dict:
    from tokenizers_vis import __version__

    return {
        "command": "vistok eval " + " ".join(args.argv),
        "data": spec,
        "split": args.split,
        "num_images": n,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "device": str(device),
        "extractor": extractor,
        "torch": torch.__version__,
        "vistok": __version__,
        "python": platform.python_version(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "wall_time_s": round(time.time() - start, 3),
    }


def cmd_tokenizer(args: argparse.Namespace) -> int:
    start = time.time()
    device = pick_device(args.device)
    tok = load_model(args.model, device)
    ks = sweep_ks(args.ks, tok.max_tokens)
    plan = codec_plan(args.codecs, args.qualities)
    spec = canonical_spec(args.data)
    out = output_dir(args.out, args.model, spec.split(":")[0], args.split)
    images = load_split(spec, args.split, tok.image_size, args.num_images, args.seed, args.quiet)
    extractor, extractor_info = load_extractor(needs_inception(not args.no_fid, args.perceptual))
    perceptual = load_perceptual(args.perceptual, extractor)
    ref = None if args.no_fid else reference(args, spec, images, extractor, device)
    fid_extractor = None if args.no_fid else extractor.to(device)
    scorer = Scorer(
        images, args.batch_size, device, fid_extractor, ref, perceptual, args.seed, args.quiet
    )
    ids = encode_all(
        tok, images, args.batch_size, args.quiet, args.refine_steps, args.refine_lr
    )  # (n K g)
    vistok = sweep_tokens(tok, ids, ks, scorer, args.seed)
    context = {
        "fid": not args.no_fid,
        "extractor": extractor_info and extractor_info["id"],
        "perceptual": getattr(perceptual, "metric_name", None),
        "seed": args.seed,
    }
    cache_root = None if args.no_codec_cache else cache_path(args.cache_dir, "codec_baselines")
    cache = CodecCache(cache_root, images, context)
    codecs = sweep_codecs(plan, scorer, cache)
    report = eval_report.tokenizer_report(tok, args.model, perceptual, vistok, codecs, ids)
    grid = reconstruction_rows(tok, ids, images, ks, args.seed)
    report["meta"] = run_meta(args, spec, images.shape[0], device, extractor_info, start)
    report["meta"]["codec_rows_from_cache"] = cache.hits
    report["encode"] = {"refine_steps": args.refine_steps, "refine_lr": args.refine_lr}
    written = write_outputs(out, eval_report.tokenizer_files(report, grid))
    print(eval_report.main_table(report))
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0


def cmd_generator(args: argparse.Namespace) -> int:
    from tokenizers_vis.metrics import extract_features, fid_kid

    start = time.time()
    device = pick_device(args.device)
    samples = load_samples(args.samples)  # (n 3 h w) uint8
    spec = canonical_spec(args.data)
    out = output_dir(args.out, args.samples.stem, spec.split(":")[0], args.split)
    size = args.size or samples.shape[-1]
    images = load_split(spec, args.split, size, args.num_images, args.seed, args.quiet)
    extractor, extractor_info = load_extractor(True)
    ref = reference(args, spec, images, extractor, device)
    parts = (samples[i : i + args.batch_size] for i in range(0, samples.shape[0], args.batch_size))
    feats = extract_features(parts, extractor, device, not args.quiet, desc="samples")
    subsets = kid_subsets(ref.shape[0], feats.shape[0])
    stats = fid_kid(ref, feats, kid_subsets=subsets, seed=args.seed)
    report = {
        "kind": "generator",
        "samples": {
            "path": str(args.samples.resolve()),
            "num_samples": samples.shape[0],
            "size": list(samples.shape[-2:]),
        },
        "reference_size": size,
        "gfid": stats["fid"],
        "kid_mean": stats["kid_mean"],
        "kid_std": stats["kid_std"],
    }
    report["meta"] = run_meta(args, spec, images.shape[0], device, extractor_info, start)
    written = write_outputs(out, eval_report.generator_files(report))
    print(f"gFID {stats['fid']:.3f}  KID {stats['kid_mean']:.5f} +- {stats['kid_std']:.5f}")
    print(f"wrote {', '.join(p.name for p in written)} to {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr and status 2, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data spec: emoji, photos, folder:DIR, shards:..")
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
    parser = _Parser(
        prog="vistok eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{tokenizer,generator}")
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
        "--no-codec-cache", action="store_true", help="recompute JPEG / WebP rows, cache nothing"
    )
    tok.add_argument(
        "--perceptual", choices=PERCEPTUAL_KINDS, default="inception", help="perceptual distance"
    )
    tok.set_defaults(func=cmd_tokenizer)
    gen = sub.add_parser("generator", help="gFID / KID of samples against a data split")
    gen.add_argument("--samples", type=Path, required=True, help="folder of images or .npz")
    _common(gen)
    gen.add_argument("--size", type=positive, help="reference image size (default: samples')")
    gen.set_defaults(func=cmd_generator)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `vistok eval ...`; returns the exit status (2 for user mistakes)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse printed usage or help already
        return int(exit_.code or 0)
    args.argv = argv
    try:
        return args.func(args)
    except torch.OutOfMemoryError:  # a batch too large for the device is the user's to change
        message = f"out of memory on {args.device} at --batch-size {args.batch_size}; lower it"
    except UsageError as err:
        message = " ".join(str(err).split())  # one line, whatever the cause's message
    print(f"vistok eval {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
