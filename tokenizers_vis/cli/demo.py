"""`vistok demo`: the main job, end to end on the bundled data, in a few minutes on a CPU.

1. data: contact sheets and summary tables of the emoji and photo sets;
2. evaluation (`tokenizers_vis.evaluation.evaluate_tokenizer`): the shipped tokenizer encodes
   held-out emoji once and decodes every prefix k = 1, 2, 4, ..., K (a reconstruction grid, PSNR /
   SSIM / MS-SSIM per k), and the same images go through JPEG and WebP for the rate-distortion
   comparison at equal bytes;
3. token files (`tokenizers_vis.codec`): held-out emoji and a full-size photo encoded to
   .vtok files at k = 16 and 64 and decoded back at their own size;
4. optional: refined tokens (`--refine-steps N`) and rFID / KID (`--fid`), each several
   CPU-minutes more.
Everything lands in `--out` (default `out/demo`), summarised in `out/demo/SUMMARY.md`.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from pathlib import Path

from tokenizers_vis.cli.common import ArgumentParser, non_negative, positive

# Codec qualities of the demo's sweep: spans both codecs' byte range at 32x32 in a few seconds.
DEMO_QUALITIES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def show_data(out: Path, size: int) -> list[str]:
    """Contact sheet and summary of each bundled data set; returns Markdown lines."""
    from tokenizers_vis.cli import data as data_tool

    lines = ["## Data", ""]
    for spec in ("emoji", "photos"):
        sheet = out / f"{spec}_contact_sheet.png"
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = data_tool.main(
                ["show", spec, "--size", str(size), "--split", "all", "--out", str(sheet)]
            )
        if code != 0:
            raise RuntimeError(f"vistok data show {spec} failed with exit code {code}")
        print(buffer.getvalue(), end="")
        lines += [f"### {spec}", "", f"![{spec}]({sheet.name})", "", "```"]
        lines += [buffer.getvalue().rstrip(), "```", ""]
    return lines


def token_files(out: Path, model: str, count: int = 16) -> list[str]:
    """The codec: held-out emoji and a full-size photo as image files -> .vtok -> images at their
    own size (what `vistok encode` / `vistok decode` do); returns Markdown lines."""
    from skimage import data as skdata

    from tokenizers_vis import codec
    from tokenizers_vis.data import build_dataset
    from tokenizers_vis.data.transforms import to_pil

    src, vtok, back = (out / "codec" / name for name in ("images", "vtok", "decoded"))
    src.mkdir(parents=True, exist_ok=True)
    emoji = build_dataset("emoji", "test", 32)
    for i in range(min(count, len(emoji))):
        to_pil(emoji[i][0]).save(src / f"emoji_{i:02d}.png")
    from PIL import Image

    Image.fromarray(skdata.chelsea()).save(src / "chelsea_451x300.jpg", quality=90)
    c = codec.Codec.from_pretrained(model)
    lines = ["## Token files: `vistok encode` / `vistok decode`", ""]
    for k in (16, 64):
        options = codec.EncodeOptions(num_tokens=k)
        enc = codec.encode_files(c, [str(src)], str(vtok / f"k{k}"), options, overwrite=True)
        dec = codec.decode_files(c, [str(vtok / f"k{k}")], str(back / f"k{k}"), overwrite=True)
        if not (enc.ok and dec.ok):
            raise RuntimeError(f"codec demo failed: {enc.line()} / {dec.line()}")
        lines += [f"- k = {k}: {enc.line()}", f"  decode: {dec.line()}"]
    size = Image.open(back / "k64" / "chelsea_451x300.png").size
    lines += [
        "",
        f"The 451x300 photo comes back at {size[0]}x{size[1]} (tiles of the model's 32 px). "
        f"Files in `{vtok.relative_to(out)}/`, images in `{back.relative_to(out)}/`; "
        "`vistok info FILE.vtok` prints a header. Format: `docs/token-format.md`.",
        "",
    ]
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


def evaluate(out: Path, args) -> list[str]:
    """The evaluation sections of SUMMARY.md; writes the report files under `out/eval`."""
    from tokenizers_vis.evaluation import evaluate_tokenizer, write_report
    from tokenizers_vis.evaluation.report import equal_bytes_section, main_table, plain, sweep_table

    common = dict(
        split="test",
        num_images=args.num_images,
        fid=args.fid,
        perceptual="inception" if args.fid else "none",
        precision=args.precision,
        progress=True,
    )
    result = evaluate_tokenizer(
        args.model, "emoji", codecs=("jpeg", "webp"), qualities=DEMO_QUALITIES, **common
    )
    result.meta["command"] = "vistok demo " + " ".join(args.argv)
    write_report(result, out / "eval")
    report = plain(result.to_dict())
    meta = result.meta
    lines = [
        "## Every prefix decodes",
        "",
        f"Tokenizer `{args.model}` on {meta['num_images']} held-out (test split) emoji, "
        f"{meta['device']} ({meta['cpu']}), {meta['precision']}. Grid rows: the originals, "
        "then k = " + ", ".join(str(r["k"]) for r in result.rows) + ".",
        "",
        "![reconstructions](eval/reconstructions.png)",
        "",
        main_table(report),
        "",
    ]
    if args.refine_steps:
        refined = evaluate_tokenizer(
            args.model, "emoji", codecs=(), refine_steps=args.refine_steps, **common
        )
        lines += ["### Refined tokens (same bytes, slower encode)", ""]
        lines += refined_table(result, refined) + [""]
    plots = [f"![{p}](eval/{p}.png)" for p in ("metric_vs_bytes", "metric_vs_k")]
    lines += ["## Against JPEG / WebP at equal bytes", "", equal_bytes_section(report), ""]
    lines += plots + [""]
    for codec, title in (("jpeg", "JPEG"), ("webp", "WebP")):
        lines += [f"### {title}, every quality", "", sweep_table(report, codec), ""]
    lines += ["Full report: [eval/report.md](eval/report.md).", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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
    parser.add_argument("--fid", action="store_true", help="add rFID / KID (slow on CPU)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    args.argv = argv
    from tokenizers_vis.evaluation import EvaluationError

    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# vistok demo", ""]
    lines += show_data(args.out, 32)
    try:
        lines += evaluate(args.out, args)
        lines += token_files(args.out, args.model)
    except EvaluationError as err:
        print(f"vistok demo: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    from tokenizers_vis.atomic import atomic_write
    from tokenizers_vis.precision import cpu_model_name

    lines.append(f"Total wall time: {time.time() - start:.0f} s on {cpu_model_name()}.")
    summary = atomic_write(args.out / "SUMMARY.md", ("\n".join(lines) + "\n").encode())
    print(f"\nwrote {summary} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
