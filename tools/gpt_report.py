"""Issue 12's generation numbers: gFID / KID of GPT samples at k = K, K/4, K/16, with and
without classifier-free guidance, beside the floors, all against the same held-out reference.

    .venv/bin/python tools/gpt_report.py --gpt runs/gpt_emoji/export --out reports/gpt-emoji32

Per guidance setting, --per-class samples of each class are generated once with K tokens; the
k-token images decode the first k of them (an autoregressive prefix is itself a sample of k
tokens). Floors, against the same --reference split: real images of another held-out split
(--floor-split), and the tokenizer's reconstructions of those images at the same k. Writes
report.json, report.md and one grid per guidance setting (a row per class, k = K).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from generation import GPT
from generation.sampling import generate
from tokenizers_vis import Tokenizer, Tokens
from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.data.emoji import load_emoji
from tokenizers_vis.data.transforms import to_tensor, to_uint8
from tokenizers_vis.evaluation import evaluate_generator
from tokenizers_vis.evaluation.report import grid_png
from tokenizers_vis.precision import cpu_model_name


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpt", required=True)
    p.add_argument("--tokenizer", default=None, help="default: the one the GPT was trained on")
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--cfg", default="none,1.5,3.0", help="guidance scales; none = no CFG")
    p.add_argument("--divisors", default="1,4,16", help="k = K / d")
    p.add_argument("--reference", default="test")
    p.add_argument("--floor-split", default="val")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def score(images: torch.Tensor, reference: str, seed: int) -> dict:
    result = evaluate_generator(to_uint8(images), "emoji", split=reference, seed=seed)
    return {"gfid": result.gfid, "kid_mean": result.kid_mean, "kid_std": result.kid_std}


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    start = time.time()
    found = GPT.open_pretrained(args.gpt)
    gpt = GPT.from_pretrained(found).eval()
    name = args.tokenizer or found.extra.get("tokenizer", "emoji32")
    tok = Tokenizer.from_pretrained(name).eval()
    K = gpt.max_tokens
    ks = [K // int(d) for d in args.divisors.split(",")]
    labels = torch.arange(gpt.num_classes).repeat_interleave(args.per_class)  # (n,)
    rows, grids = [], {}
    for text in args.cfg.split(","):
        scale = None if text == "none" else float(text)
        g = torch.Generator().manual_seed(args.seed)
        ids = torch.cat([
            generate(gpt, K, labels[i : i + 90], cfg_scale=scale, generator=g)
            for i in range(0, len(labels), 90)
        ])  # (n K g)  # fmt: skip
        for k in ks:
            images = tok.decode(Tokens(ids[:, :k]))  # (n 3 h w)
            rows.append(
                {
                    "kind": "GPT samples",
                    "cfg": scale,
                    "k": k,
                    **score(images, args.reference, args.seed),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            if k == K:
                grids[text] = [(str(c), images[labels == c][:10]) for c in range(gpt.num_classes)]
    data = load_emoji(tok.image_size)
    real = torch.stack([to_tensor(im) for im in data["images"][data["splits"] == args.floor_split]])
    rows.append({"kind": f"real {args.floor_split} images", "cfg": None, "k": None,
                 **score(real, args.reference, args.seed)})  # fmt: skip
    codes = tok.encode(real).ids  # (m K g)
    for k in ks:
        recon = tok.decode(Tokens(codes[:, :k]))
        rows.append({"kind": f"{name} reconstructions of {args.floor_split}", "cfg": None, "k": k,
                     **score(recon, args.reference, args.seed)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    meta = {
        "gpt": str(args.gpt), "tokenizer": name, "samples_per_setting": len(labels),
        "reference": f"emoji {args.reference} ({int((data['splits'] == args.reference).sum())})",
        "cpu": cpu_model_name(), "torch": torch.__version__, "wall_s": round(time.time() - start),
        "command": "python tools/gpt_report.py " + " ".join(argv or sys.argv[1:]),
        "class_names": list(getattr(gpt, "class_names", []) or []),
    }  # fmt: skip
    head = "| images | CFG | k | gFID | KID | KID std |\n|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['kind']} | {r['cfg'] or '–'} | {r['k'] or '–'} | {r['gfid']:.1f} | "
        f"{r['kid_mean']:.4f} | {r['kid_std']:.4f} |\n"
        for r in rows
    )
    md = (
        f"# GPT samples and floors against {meta['reference']}\n\n{len(labels)} samples per "
        f"setting ({args.per_class} per class); {meta['cpu']}, torch {meta['torch']}; wall "
        f"{meta['wall_s']} s.\nReproduce: `{meta['command']}`\n\n{head}{body}\n"
        + "".join(f"![CFG {c}](grid_cfg_{c}.png)\n" for c in grids)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for text, grid in grids.items():
        atomic_write(args.out / f"grid_cfg_{text}.png", grid_png(grid))
    atomic_write(args.out / "report.json", json.dumps({"rows": rows, "meta": meta}).encode())
    atomic_write(args.out / "report.md", md.encode())
    print(md)


if __name__ == "__main__":
    main()
