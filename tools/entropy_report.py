"""Issue 12's coder comparison: real .vtok files of held-out emoji, bit-packed vs range coded.

    .venv/bin/python tools/entropy_report.py --model emoji32 --gpt runs/gpt_emoji/export \
        --split test --out reports/entropy-emoji32

Every image of the split is written as a .vtok file at each k (all K tokens and shorter
prefixes) with: bit-packing (coding 0), the tokenizer's static per-position table (coding 1),
the GPT unconditionally and the GPT told the image's class (coding 2, the class stored in the
file). Each file is decoded back and its ids compared with the encoder's (exact or the script
fails). Reported: payload bits per token (what `vistok info` prints), whole-file bytes per image,
and coding speed (files/s), on the CPU named in the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.codec import Codec
from tokenizers_vis.codec.entropy import load_entropy_model
from tokenizers_vis.codec.format import read_header
from tokenizers_vis.data.emoji import load_emoji
from tokenizers_vis.precision import cpu_model_name


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="emoji32")
    p.add_argument("--gpt", required=True, help="a GPT pretrained directory (vistok gpt export)")
    p.add_argument("--split", default="test")
    p.add_argument("--ks", default="64,16,4")
    p.add_argument("--num-images", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def measure(codec: Codec, images: list[Image.Image], k: int, classes: list[int | None]) -> dict:
    """Encode, decode and check every image; payload bits per token and bytes per image."""
    start = time.perf_counter()
    files = [
        codec.encode_image(im, num_tokens=k, entropy_class=c)
        for im, c in zip(images, classes, strict=True)
    ]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    read = [codec.read(data) for data in files]
    decode_s = time.perf_counter() - start
    payload_bits = tokens = 0
    for data in files:
        header, payload = read_header(data)  # payload bytes, as `vistok info` counts them
        payload_bits += 8 * payload
        tokens += header.num_tokens
    return {
        "bits_per_token": payload_bits / tokens,
        "bytes_per_image": float(np.mean([len(d) for d in files])),
        "encode_files_per_s": len(files) / encode_s,
        "read_files_per_s": len(files) / decode_s,
        "ids": [f.ids for f in read],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = load_emoji(32)
    keep = data["splits"] == args.split
    pixels, labels = data["images"][keep], data["labels"][keep]
    if args.num_images:
        pixels, labels = pixels[: args.num_images], labels[: args.num_images]
    images = [Image.fromarray(p) for p in pixels]
    torch.set_num_threads(1)  # the GPT coder runs on one thread anyway; comparable speeds
    codec = Codec.from_pretrained(args.model)
    static = Codec.from_pretrained(args.model, entropy="static")
    gpt = load_entropy_model(args.gpt)
    with_gpt = Codec.from_pretrained(args.model, entropy=gpt)
    rows = []
    for k in (int(x) for x in args.ks.split(",")):
        plain = measure(codec, images, k, [None] * len(images))
        reference = plain["ids"]
        variants = {
            "bit-packed": plain,
            "static table": measure(static, images, k, [None] * len(images)),
            "GPT, unconditional": measure(with_gpt, images, k, [None] * len(images)),
            "GPT, class given": measure(with_gpt, images, k, [int(c) for c in labels]),
        }
        for name, result in variants.items():
            ids = result.pop("ids")
            if any(not np.array_equal(a, b) for a, b in zip(ids, reference, strict=True)):
                sys.exit(f"{name} at k={k}: decoded ids differ from the encoder's")
            rows.append({"k": k, "coding": name, **result})
            print(json.dumps(rows[-1]))
    meta = {
        "model": args.model, "gpt": str(args.gpt), "split": args.split, "images": len(images),
        "cpu": cpu_model_name(), "torch": torch.__version__, "threads": 1,
        "command": "python tools/entropy_report.py " + " ".join(argv or sys.argv[1:]),
    }  # fmt: skip
    head = "| k | coding | bits / token | bytes / image | encode files/s | read files/s |\n"
    head += "|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['k']} | {r['coding']} | {r['bits_per_token']:.3f} | {r['bytes_per_image']:.1f} | "
        f"{r['encode_files_per_s']:.1f} | {r['read_files_per_s']:.1f} |\n"
        for r in rows
    )
    md = (
        f"# Entropy coding of {args.model} token files\n\n{len(images)} {args.split} emoji, "
        f"every file decoded back exactly; {meta['cpu']}, torch {meta['torch']}, 1 thread.\n"
        f"Reproduce: `{meta['command']}`\n\n{head}{body}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "report.md", md.encode())
    atomic_write(args.out / "report.json", json.dumps({"rows": rows, "meta": meta}).encode())
    print(md)


if __name__ == "__main__":
    main()
