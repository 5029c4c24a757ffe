"""`vistok demo`: the main job, end to end on the bundled data and the shipped models, in
minutes on a CPU.

1. data: contact sheets and summary tables of the emoji and photo sets;
2. evaluation (`tokenizers_vis.evaluation.evaluate_tokenizer`): the shipped emoji tokenizer
   encodes held-out emoji once and decodes every prefix k = 1, 2, 4, ..., K (a reconstruction
   grid, PSNR / SSIM / MS-SSIM per k), and the same images go through JPEG and WebP for the
   rate-distortion comparison at equal bytes; then the same on held-out photo crops with the
   photo tokenizer;
3. token files (`tokenizers_vis.codec`): held-out emoji, photo crops and a full-size photo
   encoded to .vtok files at k = 4, 16 and 64, decoded back at their own size and scored;
4. the deterministic and rectified-flow decoders side by side at small k (the shipped
   `emoji32_rf` when it is installed, or `--rf-model DIR`);
5. a GPT sample grid (the shipped `gpt_emoji`, through the `generation` plug-in's `sample`);
6. optional: refined tokens (`--refine-steps N`) and rFID / KID (`--fid`), each several
   CPU-minutes more.
Everything lands in `--out` (default `out/demo`), summarised in `out/demo/SUMMARY.md`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tokenizers_vis.cli.common import (
    ArgumentParser,
    add_limit_flags,
    limits_from_args,
    non_negative,
    positive,
    run,
)
from tokenizers_vis.cli.demo_codec import token_files
from tokenizers_vis.cli.demo_generation import decoders_side_by_side, gpt_grid
from tokenizers_vis.errors import UsageError

# Codec qualities of the demo's sweep: spans both codecs' byte range at 32x32 in a few seconds.
DEMO_QUALITIES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
PHOTO_MODEL = "photo64"
RF_MODEL = "emoji32_rf"


def show_data(out: Path, size: int) -> list[str]:
    """Contact sheet and summary of each bundled data set (what `vistok data show SPEC --split
    all` writes and prints); returns Markdown lines."""
    from tokenizers_vis.atomic import atomic_write
    from tokenizers_vis.data import build_dataset
    from tokenizers_vis.data.summary import contact_sheet, summarize

    lines = ["## Data", ""]
    for spec in ("emoji", "photos"):
        # Photo crops drawn by seed, as `vistok data` draws them: the same sheet every run.
        kwargs = {"deterministic": True, "seed": 0} if spec == "photos" else {}

        def build(split: str, spec: str = spec, kwargs: dict = kwargs):
            return build_dataset(spec, split, size, **kwargs)

        sheet = out / f"{spec}_contact_sheet.png"
        table = summarize(spec, size, build).lines()
        png, count = contact_sheet(build("all"), count=64, nrow=8)
        atomic_write(sheet, png)
        text = "\n".join([*table, f"contact sheet of {count} all images: {sheet}"])
        print(text)
        lines += [f"### {spec}", "", f"![{spec}]({sheet.name})", "", "```", text, "```", ""]
    return lines


def refined_table(plain, refined) -> list[str]:
    """Markdown: PSNR / SSIM per k of plain and refined tokens (same bytes)."""
    steps = refined.encode["refine_steps"]
    head = ["k", "bytes", "PSNR", "SSIM", f"PSNR refined ({steps})", f"SSIM refined ({steps})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for a, b in zip(plain.rows, refined.rows, strict=True):
        cells = [str(a["k"]), f"{a['bytes_per_image']:.1f}", f"{a['psnr']:.2f}", f"{a['ssim']:.3f}"]
        cells += [f"{b['psnr']:.2f}", f"{b['ssim']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def evaluate(out: Path, args, data: str, model: str) -> list[str]:
    """The evaluation sections of SUMMARY.md for one data set; writes the report files under
    `out/eval_<data>`."""
    from tokenizers_vis.evaluation import evaluate_tokenizer, write_report
    from tokenizers_vis.evaluation.report import equal_bytes_section, main_table, plain, sweep_table

    common = dict(
        split="test",
        num_images=args.num_images,
        fid=args.fid,
        perceptual="inception" if args.fid else "none",
        precision=args.precision,
        progress=True,
        limits=limits_from_args(args),
    )
    result = evaluate_tokenizer(
        model, data, codecs=("jpeg", "webp"), qualities=DEMO_QUALITIES, **common
    )
    result.meta["command"] = "vistok demo " + " ".join(args.argv)
    folder = f"eval_{data}"
    write_report(result, out / folder)
    report = plain(result.to_dict())
    meta = result.meta
    lines = [
        f"## Every prefix decodes: {data}",
        "",
        f"Tokenizer `{model}` on {meta['num_images']} held-out (test split) {data}, "
        f"{meta['device']} ({meta['cpu']}), {meta['precision']}. Grid rows: the originals, "
        "then k = " + ", ".join(str(r["k"]) for r in result.rows) + ".",
        "",
        f"![reconstructions]({folder}/reconstructions.png)",
        "",
        main_table(report),
        "",
    ]
    if args.refine_steps:
        refined = evaluate_tokenizer(
            model, data, codecs=(), refine_steps=args.refine_steps, **common
        )
        lines += ["### Refined tokens (same bytes, slower encode)", ""]
        lines += refined_table(result, refined) + [""]
    plots = [f"![{p}]({folder}/{p}.png)" for p in ("metric_vs_bytes", "metric_vs_k")]
    lines += [
        f"### {data}: against JPEG / WebP at equal bytes",
        "",
        equal_bytes_section(report),
        "",
    ]
    lines += plots + [""]
    for codec, title in (("jpeg", "JPEG"), ("webp", "WebP")):
        lines += [f"#### {title}, every quality", "", sweep_table(report, codec), ""]
    lines += [f"Full report: [{folder}/report.md]({folder}/report.md).", ""]
    return lines


def default_photo_model(model: str) -> str:
    """The shipped photo tokenizer when there is one, else the emoji model itself."""
    from tokenizers_vis.hub import list_pretrained

    return PHOTO_MODEL if PHOTO_MODEL in list_pretrained() else model


def default_rf_model() -> str | None:
    """The shipped rectified-flow decoder on emoji32's tokens, when there is one."""
    from tokenizers_vis.hub import list_pretrained

    return RF_MODEL if RF_MODEL in list_pretrained() else None


def check_models(args) -> None:
    """A tokenizer named wrong fails now, in one line, not after minutes of other sections."""
    from tokenizers_vis.hub import PretrainedError, resolve

    for option in ("model", "photo_model", "rf_model"):
        name = getattr(args, option)
        try:
            if name is not None:
                resolve(name)
        except PretrainedError as err:
            raise UsageError(f"--{option.replace('_', '-')}: {err}") from None


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vistok demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--model", default="emoji32", help="pretrained directory or shipped name")
    parser.add_argument("--num-images", type=positive, default=179, help="held-out images")
    parser.add_argument(
        "--refine-steps",
        type=non_negative,
        default=0,
        help="add refined-token columns with this many refinement steps (minutes on a CPU)",
    )
    parser.add_argument("--photo-model", help=f"tokenizer for photos (default {PHOTO_MODEL})")
    parser.add_argument(
        "--rf-model", help=f"a rectified-flow tokenizer to show beside the ViT (default {RF_MODEL})"
    )
    parser.add_argument("--no-rf", action="store_true", help="skip the two-decoder section")
    parser.add_argument("--gpt", default="gpt_emoji", help="GPT for the sample grid")
    parser.add_argument("--gpt-tokens", type=positive, default=64, help="tokens per sample")
    parser.add_argument("--gpt-cfg", type=float, default=3.0, help="guidance of the samples")
    parser.add_argument("--no-gpt", action="store_true", help="skip the GPT sample grid")
    parser.add_argument("--fid", action="store_true", help="add rFID / KID (slow on CPU)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    add_limit_flags(parser)  # loading --model, --photo-model, --rf-model and --gpt
    return parser


def demo(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv
    check_models(args)
    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# vistok demo", ""]
    lines += show_data(args.out, 32)
    photo_model = args.photo_model or default_photo_model(args.model)
    lines += evaluate(args.out, args, "emoji", args.model)
    lines += evaluate(args.out, args, "photos", photo_model)
    limits = limits_from_args(args)
    lines += token_files(args.out, args.model, photo_model, limits=limits)
    if not args.no_rf:
        rf_model = args.rf_model or default_rf_model()
        lines += decoders_side_by_side(args.out, args.model, rf_model, limits=limits)
    if not args.no_gpt:
        lines += gpt_grid(args.out, args.gpt, args.gpt_tokens, args.gpt_cfg, limits=limits)
    from tokenizers_vis.atomic import atomic_write
    from tokenizers_vis.precision import cpu_model_name

    lines.append(f"Total wall time: {time.time() - start:.0f} s on {cpu_model_name()}.")
    summary = atomic_write(args.out / "SUMMARY.md", ("\n".join(lines) + "\n").encode())
    print(f"\nwrote {summary} ({time.time() - start:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `vistok demo`; returns the exit status (2 for user mistakes: a model, a data set)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(lambda: demo(argv), "vistok demo", writes=True)


if __name__ == "__main__":
    raise SystemExit(main())
