"""The `gpt` section of `vistok bench`: sampling tokens/s with and without the KV cache (issue
goal: the cache >= 5x faster at K = 256).

Registered under the `vistok.bench_sections` entry points (pyproject.toml), so `vistok bench`
runs it without `tokenizers_vis` importing this package; it uses only the benchmark's public
plug-in API (`BenchSection`, `Context`, `measure`).

A randomly initialised GPT of the preset's architecture (output heads drawn from N(0, 0.02):
zero-initialised heads would make every draw uniform) generates `batch` sequences of K
tokens with classifier-free guidance (the null-class rows double the batch, as sampling does),
unless `cfg` is 0 / None. Each setting is timed after a short warm-up (4 tokens: the same
kernels, without paying for a full uncached run).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from generation.gpt import GPT
from generation.presets import gpt_spec
from generation.sampling import generate
from tokenizers_vis.benchmark import BenchSection, CliOption, Context, measure
from tokenizers_vis.cli.common import int_list, positive
from tokenizers_vis.precision import autocast

GOAL_SPEEDUP = 5.0
GOAL_K = 256


def _lengths(text: str) -> tuple[int, ...]:
    """argparse type: "64,256" -> (64, 256), each >= 1."""
    ks = tuple(int_list(text))
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return ks


def build_gpt(preset: str, k: int, vocab: int, device: torch.device) -> GPT:
    data = {"vocab_sizes": [vocab], "max_tokens": k, "num_classes": 9}
    torch.manual_seed(0)
    gpt = GPT(**gpt_spec(preset, data)).to(device).eval()
    with torch.no_grad():
        for head in gpt.outputs:
            head.weight.normal_(std=0.02)
    return gpt


def run_gpt(ctx: Context, options: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s at each K with and without the KV cache, and the cache's speed-up per K.

    Options: preset, ks (sequence lengths K), batch, vocab, cfg (guidance scale; 0 or None for
    none).
    """
    preset, ks, batch = options["preset"], tuple(options["ks"]), options["batch"]
    vocab, cfg = options["vocab"], options["cfg"] or None
    device = ctx.device
    records = []
    for k in ks:
        gpt = build_gpt(preset, k, vocab, device)
        labels = torch.arange(batch, device=device) % 9
        for cache in (True, False):

            def run(n: int = k, cache: bool = cache, gpt: GPT = gpt, labels: Any = labels) -> Any:
                generator = torch.Generator(device).manual_seed(0)
                with autocast(device, ctx.precision.name):
                    return generate(
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
    notes = [
        f"KV cache speed-up: {', '.join(f'{v:.1f}x at K = {k}' for k, v in speedups.items())} "
        f"(goal {GOAL_SPEEDUP}x at K = {GOAL_K})."
    ]
    return {"records": records, "kv_cache_speedup": speedups, "goal": goal, "notes": notes}


SECTION = BenchSection(
    name="gpt",
    title="GPT sampling",
    run=run_gpt,
    columns=(
        ("preset", "preset"),
        ("K", "K"),
        ("kv_cache", "KV cache"),
        ("batch", "batch"),
        ("tokens_per_s", "tokens/s"),
    ),  # fmt: skip
    options={"preset": "gpt_emoji", "ks": (64, 256), "batch": 4, "vocab": 4096, "cfg": 2.0},
    quick_options={"preset": "gpt_tiny", "ks": (8, 16), "batch": 2, "vocab": 64},
    cli_options=(
        CliOption("--gpt-preset", "preset", str, "GPT preset for `gpt` (default gpt_emoji)"),
        CliOption("--gpt-ks", "ks", _lengths, "sequence lengths K (default 64,256)"),
        CliOption("--gpt-batch", "batch", positive, "sequences per GPT batch"),
        CliOption("--gpt-vocab", "vocab", positive, "GPT vocabulary size"),
        CliOption("--gpt-cfg", "cfg", float, "guidance scale; 0 for none"),
    ),
)
