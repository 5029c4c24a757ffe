"""The machine's measured matmul peak, and a check that the FLOP counter counts what we think.

Peak: the fastest of several n x n @ n x n matmuls (2 n^3 FLOPs; the median is recorded too)
in fp32 and, where the hardware runs it natively, in bf16
(`tokenizers_vis.precision.cpu_bf16_native`; emulated bf16 on CPU is hundreds of times slower,
so its "peak" would mean nothing). On GPU fp32 is true fp32 (TF32
off for the measurement) and bf16 is always measured. Every achieved FLOP/s in the report is a
fraction of the peak in the precision it ran in.

FLOP check: a TiTok-B-64-shaped encoder (the `vit_b16_k64_vq` preset: ViT-B/16, 256 px, 256
patches + 64 latent tokens) costs about 55.2 GFLOP per image by hand: 11 blocks x (24 N w^2 +
4 N^2 w) with N = 320 tokens, w = 768; the last block computes only the R = 64 latent rows
that are read (keys and values of all N: 4 N w^2 + 20 R w^2 + 4 R N w; the full block would be
58.4 GFLOP in all); plus the patch embedding 2 x 256 x 768^2. The counter's number is recorded
beside it. Counted on the meta device: no weights, no arithmetic.
"""

from __future__ import annotations

from typing import Any

import torch

from tokenizers_vis.benchmark.common import Context, measure
from tokenizers_vis.flops import count_flops
from tokenizers_vis.precision import cpu_bf16_native
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer

_N, _R, _W = 320, 64, 768  # tokens, latent rows read from the last block, width
TITOK_HAND_GFLOP = (
    11 * (24 * _N * _W**2 + 4 * _N**2 * _W)
    + (4 * _N * _W**2 + 20 * _R * _W**2 + 4 * _R * _N * _W)
    + 2 * 256 * _W**2
) / 1e9  # 55.16


def matmul_peak(
    device: torch.device, dtype: torch.dtype, n: int, warmup: int, repeats: int
) -> dict[str, Any]:
    """FLOP/s of an n x n matmul in `dtype` on `device` (median of `repeats`)."""
    g = torch.Generator(device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(dtype)
    b = torch.randn(n, n, generator=g, device=device).to(dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 peak
    try:
        timing = measure(lambda: a @ b, device, max(2, warmup), max(5, repeats))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    flops = 2 * n**3
    # A peak is the best the machine does: the fastest call, not the median one.
    return {"n": n, "gflop": flops / 1e9, "flops_per_s": flops / timing["seconds_min"],
            "median_flops_per_s": flops / timing["seconds_median"], "timing": timing}  # fmt: skip


def peak_dtypes(device: torch.device) -> dict[str, torch.dtype | str]:
    """The dtypes to measure: fp32 always; bf16 where native (else the reason it is skipped)."""
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        return {"fp32": torch.float32, "bf16": torch.bfloat16 if native else "no native bf16"}
    bf16 = torch.bfloat16 if cpu_bf16_native() else "CPU has no native bf16 (emulated: not a peak)"
    return {"fp32": torch.float32, "bf16": bf16}


def run_peak(ctx: Context, n: int, when: str = "start") -> dict[str, Any]:
    """Measure the peaks; `ctx.peak` (FLOP/s by dtype name, used by the other sections) keeps
    the best measurement so far."""
    records, skipped = [], {}
    for name, dtype in peak_dtypes(ctx.device).items():
        if isinstance(dtype, str):
            skipped[name] = dtype
            continue
        result = matmul_peak(ctx.device, dtype, n, ctx.warmup, ctx.repeats)
        ctx.peak[name] = max(ctx.peak.get(name, 0.0), result["flops_per_s"])
        records.append(ctx.stamp({"dtype": name, "when": when, **result}, precision=name))
    out = {"records": records, "skipped": skipped, "peak_flops_per_s": dict(ctx.peak)}
    return out | ({"flop_check": flop_check()} if when == "start" else {})


def remeasure_peak(ctx: Context, n: int, results: dict[str, dict[str, Any]]) -> None:
    """Measure the peak again after the other sections and keep the best of both (one
    measurement on a machine that was briefly busy would inflate every fraction), then
    recompute every record's `fraction_of_peak` from it."""
    again = run_peak(ctx, n, when="end")
    results["peak"]["records"] += again["records"]
    results["peak"]["peak_flops_per_s"] = dict(ctx.peak)
    for section in results.values():
        for record in section.get("records", []) + section.get("suite_records", []):
            if "achieved_gflop_per_s" in record:
                achieved = record["achieved_gflop_per_s"] * 1e9
                record["fraction_of_peak"] = ctx.fraction(achieved, record["precision"])
                if "fraction_of_bf16_peak" in record:  # the suite's pass, against bf16 as well
                    record["fraction_of_bf16_peak"] = ctx.fraction(achieved, "bf16")


def flop_check() -> dict[str, Any]:
    """Counted against hand-computed GFLOP of the vit_b16_k64_vq encoder on one 256 px image."""
    with torch.device("meta"):
        tok = Tokenizer(**preset_spec("vit_b16_k64_vq"))
        images = torch.empty(1, 3, 256, 256)
    counted = count_flops(lambda: tok.encoder(images)) / 1e9
    return {
        "model": "vit_b16_k64_vq encoder, 1 image at 256 px",
        "counted_gflop": counted,
        "hand_gflop": TITOK_HAND_GFLOP,
        "relative_difference": counted / TITOK_HAND_GFLOP - 1,
    }
