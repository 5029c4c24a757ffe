"""Benchmark GPT sampling: tokens/s with and without the KV cache at K = 64 and 256.

    .venv/bin/python tools/bench_gpt.py [--preset gpt_emoji] [--ks 64,256] [--batch-size 8]
        [--vocab 4096] [--cfg 2.0] [--device auto] [--precision auto] [--threads N] [--json OUT]

A randomly initialised GPT of the preset's architecture generates `batch-size` sequences of K
tokens (with classifier-free guidance, as sampling does, unless --cfg 0); each setting runs once
after a short warm-up. Prints a table and, with --json, writes the numbers. Not a test: speed
depends on the machine and on whatever else it runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from generation import GPT, generate, gpt_spec
from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.precision import autocast, cpu_model_name, pick_device


def bench(gpt: GPT, k: int, batch: int, cfg: float | None, cache: bool, device, precision) -> dict:
    labels = torch.arange(batch, device=device) % max(1, gpt.num_classes)
    run = lambda n: generate(  # noqa: E731
        gpt, n, labels, cfg_scale=cfg, use_cache=cache,
        generator=torch.Generator(device).manual_seed(0),
    )  # fmt: skip
    with autocast(device, precision):
        run(min(k, 4))  # warm-up: allocator, kernels
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(k)
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"K": k, "kv_cache": cache, "seconds": seconds, "tokens_per_s": batch * k / seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="gpt_emoji")
    p.add_argument("--ks", default="64,256", help="sequence lengths K")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--cfg", type=float, default=2.0, help="guidance scale; 0 for none")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--threads", type=int, help="torch intra-op threads (default torch's)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    rows = []
    for k in (int(x) for x in args.ks.split(",")):
        data = {"vocab_sizes": [args.vocab], "max_tokens": k, "num_classes": 9}
        torch.manual_seed(0)
        gpt = GPT(**gpt_spec(args.preset, data)).to(device).eval()
        with torch.no_grad():  # zero-initialised outputs would make every draw uniform
            for out in gpt.outputs:
                out.weight.normal_(std=0.02)
        for cache in (True, False):
            rows.append(bench(gpt, k, args.batch_size, args.cfg or None, cache, device,
                              args.precision))  # fmt: skip
            r = rows[-1]
            print(f"K={k:4d}  kv_cache={str(cache):5}  {r['tokens_per_s']:9.1f} tokens/s  "
                  f"({r['seconds']:.2f} s for {args.batch_size} x {k})")  # fmt: skip
    for k in sorted({r["K"] for r in rows}):
        on, off = (
            next(r for r in rows if r["K"] == k and r["kv_cache"] is c) for c in (True, False)
        )
        print(
            f"K={k:4d}  speed-up of the KV cache: {on['tokens_per_s'] / off['tokens_per_s']:.1f}x"
        )
    if args.json:
        meta = {
            "preset": args.preset,
            "batch_size": args.batch_size,
            "vocab": args.vocab,
            "cfg": args.cfg,
            "device": str(device),
            "cpu": cpu_model_name(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
        text = json.dumps({"meta": meta, "results": rows}, indent=1) + "\n"
        atomic_write(args.json, text.encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
