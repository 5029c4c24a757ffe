"""`vistok demo`: the main job, end to end on the bundled data, in a few minutes on a CPU.

1. data: contact sheets and summary tables of the emoji and photo sets;
2. reconstruction: the shipped tokenizer encodes held-out emoji and decodes every prefix
   k = 1, 2, 4, ..., K into one PNG grid, with PSNR / SSIM per k;
3. evaluation: rate-distortion against JPEG / WebP at equal bytes (`vistok eval tokenizer`).
Everything lands in `--out` (default `out/demo`), summarised in `out/demo/SUMMARY.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import torch

from tokenizers_vis import Tokenizer, Tokens, list_pretrained, refine_tokens
from tokenizers_vis.data import build_dataset
from tokenizers_vis.hub import PretrainedError
from tokenizers_vis.metrics import ReconstructionMeter, token_bytes
from tokenizers_vis.tokenizer import prefix_lengths
from tokenizers_vis.training.callbacks import grid_rows, save_grid

# Codec qualities of the demo's sweep: spans both codecs' byte range at 32x32 in a few seconds.
DEMO_QUALITIES = "1,5,10,20,30,40,50,60,70,80,90,95"
# Encoder-side refinement next to the plain encoder is opt-in (`--refine-steps 20` gives the
# model card's table): on a 2-core CPU it adds minutes (fp32 decoder passes over 7 prefixes).
DEMO_REFINE_STEPS = 0


def show_data(out: Path, size: int) -> list[str]:
    """Contact sheet and summary of each bundled data set; returns Markdown lines."""
    from tools import data as data_tool

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
        lines += [
            f"### {spec}",
            "",
            f"![{spec}]({sheet.name})",
            "",
            "```",
            buffer.getvalue().rstrip(),
            "```",
            "",
        ]
    return lines


@torch.no_grad()
def reconstruct(
    out: Path, model: str, num_images: int, refine_steps: int = 0, batch_size: int = 64
) -> list[str]:
    """Prefix sweep of the shipped tokenizer on held-out (test) emoji; returns Markdown lines.

    `refine_steps` > 0 adds the PSNR / SSIM of refined tokens (`refine_tokens`: same bytes, a
    slower encoder-side search) next to the plain encoder's.
    """
    tok = Tokenizer.from_pretrained(model).eval()
    data = build_dataset("emoji", split="test", size=tok.image_size)
    n = min(num_images, len(data))
    images = torch.stack([data[i][0] for i in range(n)])  # (n 3 s s)
    ks = prefix_lengths(tok.max_tokens)
    grid = grid_rows(tok, images[:12], ks)
    save_grid(grid, 12, out / "reconstructions.png")
    lines = [
        "## Reconstruction: every prefix decodes",
        "",
        f"Tokenizer `{model}` on {n} held-out (test split) emoji at {tok.image_size}px. "
        "Grid rows: original, then k = " + ", ".join(map(str, ks)) + ".",
        "",
        "![reconstructions](reconstructions.png)",
        "",
    ]
    batches = [images[s : s + batch_size] for s in range(0, n, batch_size)]
    encodings = {"": [tok.encode(b).ids for b in batches]}  # (b K g) per batch
    if refine_steps:
        encodings[f" refined {refine_steps}"] = [
            refine_tokens(tok, b, steps=refine_steps).ids for b in batches
        ]
    head = ["k", "bytes"] + [f"{m}{name}" for name in encodings for m in ("PSNR", "SSIM")]
    lines += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for k in ks:
        nbytes = float(token_bytes(k, tok.vocab_sizes))
        cells = [str(k), f"{nbytes:.1f}"]
        for ids in encodings.values():
            meter = ReconstructionMeter()
            for batch, batch_ids in zip(batches, ids, strict=True):
                meter.update(tok.decode(Tokens(batch_ids[:, :k])), batch)
            m = meter.compute()
            cells += [f"{m['psnr']:.2f}", f"{m['ssim']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
        print("  ".join(f"{h}={c}" for h, c in zip(head, cells, strict=True)))
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vistok demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--model", default="emoji32", help="pretrained directory or shipped name")
    parser.add_argument("--num-images", type=int, default=179, help="held-out images to score")
    parser.add_argument("--skip-eval", action="store_true", help="skip the JPEG / WebP sweep")
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=DEMO_REFINE_STEPS,
        help=f"encoder-side refinement steps for the refined columns, 0 for none "
        f"(default {DEMO_REFINE_STEPS})",
    )
    parser.add_argument(
        "--fid", action="store_true", help="add rFID / KID to the sweep (slow on CPU)"
    )
    args = parser.parse_args(argv)
    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# vistok demo", ""]
    lines += show_data(args.out, 32)
    try:
        lines += reconstruct(args.out, args.model, args.num_images, args.refine_steps)
    except PretrainedError as err:
        print(
            f"vistok demo: error: {err} (shipped: {', '.join(list_pretrained()) or 'none'})",
            file=sys.stderr,
        )
        return 2
    if not args.skip_eval:
        lines += evaluate(args.out, args.model, args.num_images, args.fid)
    lines.append(f"Total wall time: {time.time() - start:.0f} s.")
    summary = args.out / "SUMMARY.md"
    tmp = summary.with_name(".SUMMARY.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(summary)
    print(f"\nwrote {summary} ({time.time() - start:.0f} s)")
    return 0


def evaluate(out: Path, model: str, num_images: int, fid: bool) -> list[str]:
    """Rate-distortion sweep against JPEG / WebP via `vistok eval tokenizer`.

    rFID needs ~25 TF-Inception passes over every image (one per k and codec setting): minutes on a
    GPU, tens of minutes on a 2-core CPU, so the demo asks for it only with `--fid`.
    """
    from tools import eval as eval_tool

    eval_dir = out / "eval"
    argv = [
        "tokenizer",
        "--model",
        model,
        "--data",
        "emoji",
        "--split",
        "test",
        "--num-images",
        str(num_images),
        "--out",
        str(eval_dir),
        "--qualities",
        DEMO_QUALITIES,
        "--quiet",
    ]
    if not fid:
        argv.append("--no-fid")
    code = eval_tool.main(argv)
    if code != 0:
        raise RuntimeError(f"vistok eval tokenizer failed with exit code {code}")
    table = (eval_dir / "report.md").read_text() if (eval_dir / "report.md").is_file() else ""
    plots = [f"![{p.stem}](eval/{p.name})" for p in sorted(eval_dir.glob("metric_vs_*.png"))]
    return ["## Rate-distortion against JPEG / WebP", "", *plots, "", table, ""]


if __name__ == "__main__":
    raise SystemExit(main())
