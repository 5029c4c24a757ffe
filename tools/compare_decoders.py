"""Issue 11's comparison: the same tokens decoded by the deterministic ViT and the rectified flow.

    .venv/bin/python tools/compare_decoders.py --vit emoji32 \
        --rf runs/emoji32_fsq_rf_decoder/export --data emoji --split test \
        --out reports/decoders-emoji32

Both tokenizers must share the encoder and quantizer (decoder-only training on frozen tokens), so
the script first checks that they give the same ids on every image. Then, through the evaluation
API: rFID / KID / PSNR / SSIM per k for the ViT decoder and for the RF decoder at its default
steps; the RF decoder at fewer steps on the small k where it matters; decode time per image per
step count (decoding alone, batch 32, no scoring); and one grid of both decoders at small k.
Writes report.json, report.md and grid.png into --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from tokenizers_vis import Tokenizer, Tokens
from tokenizers_vis.evaluation import evaluate_tokenizer
from tokenizers_vis.evaluation.report import grid_png, to_json, write_files
from tokenizers_vis.precision import cpu_model_name

COLUMNS = (("rfid", 2), ("kid_mean", 4), ("psnr", 2), ("ssim", 4))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vit", default="emoji32")
    p.add_argument("--rf", required=True, help="the rectified-flow tokenizer (directory or name)")
    p.add_argument("--data", default="emoji")
    p.add_argument("--split", default="test")
    p.add_argument("--num-images", type=int, default=None)
    p.add_argument("--ks", default="1,2,4,8,16,64")
    p.add_argument("--steps", default="2,4,8,25", help="RF step counts; the last is the full one")
    p.add_argument("--few-step-ks", default="2,8", help="k swept at the smaller step counts")
    p.add_argument("--grid-ks", default="1,2,4,8,16")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def same_tokens(vit: Tokenizer, rf: Tokenizer, images: torch.Tensor) -> None:
    with torch.no_grad():
        a, b = vit.encode(images).ids, rf.encode(images).ids
    if not torch.equal(a, b):
        sys.exit("the two tokenizers give different ids: not the same frozen encoder")


def decode_seconds(tok: Tokenizer, ids: torch.Tensor, k: int, steps: int | None) -> float:
    """Seconds per image to decode `ids[:, :k]` (decoding alone; one warm-up batch)."""
    g = torch.Generator()
    with torch.no_grad():
        tok.decode(Tokens(ids[:8, :k]), num_steps=steps, generator=g.manual_seed(0))
        start = time.perf_counter()
        for i in range(0, ids.shape[0], 32):
            tok.decode(Tokens(ids[i : i + 32, :k]), num_steps=steps, generator=g.manual_seed(i))
    return (time.perf_counter() - start) / ids.shape[0]


def rows_of(result, label: str, steps: int | None) -> list[dict]:
    return [
        {"decoder": label, "steps": steps, "k": r["k"], **{m: r.get(m) for m, _ in COLUMNS}}
        for r in result.rows
    ]


def markdown(report: dict) -> str:
    head = "| decoder | steps | k | rFID | KID | PSNR | SSIM |\n|---|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['decoder']} | {r['steps'] or '–'} | {r['k']} | "
        + " | ".join("–" if r[m] is None else f"{r[m]:.{d}f}" for m, d in COLUMNS)
        + " |\n"
        for r in report["rows"]
    )
    times = "".join(
        f"| {t['decoder']} | {t['steps'] or '–'} | {1000 * t['seconds_per_image']:.2f} |\n"
        for t in report["decode_time"]
    )
    m = report["meta"]
    return (
        f"# Decoders on the same tokens: {m['vit']} vs {m['rf']}\n\n"
        f"{m['images']} {m['data']} {m['split']} images; {m['cpu']}, torch {m['torch']}, "
        f"{m['threads']} threads; wall {m['wall_s']:.0f} s.\n"
        f"Reproduce: `{m['command']}`\n\n{head}{body}\n"
        f"## Decode time per image (k = {m['time_k']}, batch 32)\n\n"
        f"| decoder | steps | ms / image |\n|---|---|---|\n{times}\n![grid](grid.png)\n"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    start = time.time()
    vit, rf = Tokenizer.from_pretrained(args.vit).eval(), Tokenizer.from_pretrained(args.rf).eval()
    steps = ints(args.steps)
    common = dict(
        data=args.data, split=args.split, num_images=args.num_images, codecs="none",
        perceptual="none", seed=args.seed, grid_images=8, progress=True,
    )  # fmt: skip
    full = evaluate_tokenizer(vit, ks=ints(args.ks), **common)
    images = full.grid[0][1]  # (8 3 h w) the originals
    same_tokens(vit, rf, images)
    rows = rows_of(full, "vit", None)
    rf_full = evaluate_tokenizer(rf, ks=ints(args.ks), num_steps=steps[-1], **common)
    if rf_full.usage != full.usage:  # the same statistics of all ids: the same tokens
        sys.exit("the two tokenizers' ids differ on the evaluation images")
    rows += rows_of(rf_full, "rectified_flow", steps[-1])
    for s in steps[:-1]:
        few = evaluate_tokenizer(rf, ks=ints(args.few_step_ks), num_steps=s, **common)
        rows += rows_of(few, "rectified_flow", s)
    with torch.no_grad():
        ids = vit.encode(images.repeat(8, 1, 1, 1)).ids  # (64 K 1) for timing only
    time_k = 4
    vit_time = decode_seconds(vit, ids, time_k, None)
    timing = [{"decoder": "vit", "steps": None, "seconds_per_image": vit_time}]
    timing += [
        {
            "decoder": "rectified_flow",
            "steps": s,
            "seconds_per_image": decode_seconds(rf, ids, time_k, s),
        }
        for s in steps
    ]
    grid = [full.grid[0]]
    g = torch.Generator()
    with torch.no_grad():
        for k in ints(args.grid_ks):
            grid.append((f"ViT k={k}", vit.decode(Tokens(ids[:8, :k]))))
        for k in ints(args.grid_ks):
            out = rf.decode(Tokens(ids[:8, :k]), num_steps=steps[-1], generator=g.manual_seed(0))
            grid.append((f"RF k={k}", out))
    meta = {
        "vit": str(args.vit), "rf": str(args.rf), "data": args.data, "split": args.split,
        "images": full.meta["num_images"], "cpu": cpu_model_name(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "time_k": time_k, "wall_s": time.time() - start,
        "command": "python tools/compare_decoders.py " + " ".join(argv or sys.argv[1:]),
    }  # fmt: skip
    report = {"rows": rows, "decode_time": timing, "meta": meta}
    files = {"report.json": to_json(report), "report.md": markdown(report).encode()}
    files["grid.png"] = grid_png(grid)
    for path in write_files(args.out, files):
        print(path)
    print(markdown(report))


if __name__ == "__main__":
    main()
