"""GPT sampling tokens/s with and without the KV cache (issue goal: the cache >= 5x faster at
K = 256).

`generation` is a separate package over `tokenizers_vis`' public API, and `tokenizers_vis`
never imports it at module level: `run_gpt` imports its public API (`GPT`, `generate`,
`gpt_spec`) when it runs, and reports the section as skipped where it is not installed.

A randomly initialised GPT of the preset's architecture (output heads drawn from N(0, 0.02):
zero-initialised heads would make every draw uniform) generates `batch` sequences of K
tokens with classifier-free guidance (the null-class rows double the batch, as sampling does),
unless `cfg` is None. Each setting is timed after a short warm-up (4 tokens: the same kernels,
without paying for a full uncached run).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from tokenizers_vis.benchmark.common import Context, measure
from tokenizers_vis.precision import autocast

GOAL_SPEEDUP = 5.0
GOAL_K = 256


def build_gpt(generation: Any, preset: str, k: int, vocab: int, device: torch.device) -> Any:
    data = {"vocab_sizes": [vocab], "max_tokens": k, "num_classes": 9}
    torch.manual_seed(0)
    gpt = generation.GPT(**generation.gpt_spec(preset, data)).to(device).eval()
    with torch.no_grad():
        for head in gpt.outputs:
            head.weight.normal_(std=0.02)
    return gpt


def run_gpt(
    ctx: Context,
    preset: str,
    ks: tuple[int, ...],
    batch: int,
    vocab: int = 4096,
    cfg: float | None = 2.0,
) -> dict[str, Any]:
    """Tokens/s at each K with and without the KV cache, and the cache's speed-up per K."""
    try:
        generation = importlib.import_module("generation")
    except ImportError as err:
        return {"records": [], "skipped": f"generation is not installed ({err})"}
    device = ctx.device
    records = []
    for k in ks:
        gpt = build_gpt(generation, preset, k, vocab, device)
        labels = torch.arange(batch, device=device) % 9
        for cache in (True, False):

            def run(n: int = k, cache: bool = cache, gpt: Any = gpt, labels: Any = labels) -> Any:
                generator = torch.Generator(device).manual_seed(0)
                with autocast(device, ctx.precision.name):
                    return generation.generate(
                        gpt, n, labels, cfg_scale=cfg, use_cache=cache, generator=generator
                    )

            short = min(k, 4)
            timing = measure(run, device, ctx.warmup, ctx.repeats, lambda r=run, n=short: r(n))
            seconds = timing["seconds_median"]
            records.append(ctx.stamp({
                "preset": preset, "K": k, "kv_cache": cache, "batch": batch, "vocab": vocab,
                "cfg": cfg, "tokens_per_s": batch * k / seconds, "seconds": seconds,
                "timing": timing,
            }))  # fmt: skip
    speedups = {}
    for k in ks:
        rate = {r["kv_cache"]: r["tokens_per_s"] for r in records if r["K"] == k}
        speedups[str(k)] = rate[True] / rate[False]
    goal = {"K": GOAL_K, "speedup": GOAL_SPEEDUP}
    if str(GOAL_K) in speedups:
        goal["meets_goal"] = speedups[str(GOAL_K)] >= GOAL_SPEEDUP
    return {"records": records, "kv_cache_speedup": speedups, "goal": goal}
