"""Tokenizer speed: encode and decode images/s, achieved FLOP/s against the matmul peak, peak
memory; and a rectified-flow decoder's time per image against its number of steps.

Inputs are smooth random images (speed does not depend on content); tokens are the encoder's
own. FLOPs per image are counted at batch 1 (they grow linearly with the batch). A sampling
decoder decodes with its default seeded noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tokenizers_vis.benchmark.common import Context, measure, smooth_images
from tokenizers_vis.benchmark.memory import peak_memory
from tokenizers_vis.flops import count_flops
from tokenizers_vis.limits import Limits
from tokenizers_vis.precision import autocast
from tokenizers_vis.presets import PRESETS, preset_spec
from tokenizers_vis.tokenizer import Tokenizer


def load_tokenizer(
    source: str, overrides: dict[str, Any] | None = None, limits: Limits | None = None
) -> Tokenizer:
    """A preset (freshly initialised, seed 0; `overrides` merge into its spec) or a pretrained
    directory / shipped name (loaded within `limits`), in eval mode."""
    if source in PRESETS:
        torch.manual_seed(0)
        return Tokenizer(**preset_spec(source, **(overrides or {}))).eval()
    if overrides:
        raise ValueError(f"overrides need a preset, {source!r} is a pretrained model")
    return Tokenizer.from_pretrained(source, limits=limits).eval()


def tokenizer_call(
    tok: Tokenizer, op: str, images: torch.Tensor, num_steps: int | None, precision: str
) -> Callable[[], Any]:
    """The call to time: `encode(images)`, or `decode` of their tokens (encoded here, once)."""
    device = images.device
    if op == "encode":

        def encode() -> Any:
            with autocast(device, precision):
                return tok.encode(images)

        return encode
    with autocast(device, precision):
        tokens = tok.encode(images)

    def decode() -> Any:
        with autocast(device, precision):
            return tok.decode(tokens, num_steps=num_steps)

    return decode


def prepare(task: dict[str, Any]) -> Callable[[], Any]:
    """Build a model, inputs and the call from a picklable task (memory children run this).

    Runs the call once on a single image first, so that one-time costs (kernel code paged in,
    thread pools, oneDNN set-up) are not counted as the batch's memory.
    """
    device = torch.device(task["device"])
    tok = load_tokenizer(task["source"], task.get("overrides"), task.get("limits")).to(device)
    images = smooth_images(task["batch"], tok.image_size).to(device)
    op, steps, precision = task["op"], task.get("num_steps"), task["precision"]
    tokenizer_call(tok, op, images[:1], steps, precision)()
    return tokenizer_call(tok, op, images, steps, precision)


def _flops_per_image(tok: Tokenizer, op: str, steps: int | None, ctx: Context) -> int:
    images = smooth_images(1, tok.image_size).to(ctx.device)
    return count_flops(tokenizer_call(tok, op, images, steps, ctx.precision.name))


def _record(ctx: Context, timing: dict[str, Any], batch: int, flops: int) -> dict[str, Any]:
    seconds = timing["seconds_median"]
    achieved = flops * batch / seconds
    return {
        "batch": batch,
        "images_per_s": batch / seconds,
        "seconds_per_image": seconds / batch,
        "gflop_per_image": flops / 1e9,
        "achieved_gflop_per_s": achieved / 1e9,
        "fraction_of_peak": ctx.fraction(achieved),
        "timing": timing,
    }


def run_tokenizers(
    ctx: Context,
    models: list[tuple[str, tuple[int, ...]]],
    decode_steps: tuple[int, ...],
    memory: bool = True,
) -> dict[str, Any]:
    """Encode / decode speed, FLOP fraction and peak memory of each (model, batches).

    A sampling decoder decodes at each of `decode_steps`; its memory is measured at the first
    (the sampler's state does not grow with the steps).
    """
    records = []
    for source, batches in models:
        tok = load_tokenizer(source, limits=ctx.limits).to(ctx.device)
        steps = decode_steps if getattr(tok.decoder, "generative", False) else (None,)
        ops = [("encode", None)] + [("decode", s) for s in steps]
        flops = {(op, s): _flops_per_image(tok, op, s, ctx) for op, s in ops}
        for batch in batches:
            images = smooth_images(batch, tok.image_size).to(ctx.device)
            for op, s in ops:
                call = tokenizer_call(tok, op, images, s, ctx.precision.name)
                timing = measure(call, ctx.device, ctx.warmup, ctx.repeats)
                record = {"model": source, "op": op, "num_steps": s}
                record |= _record(ctx, timing, batch, flops[op, s])
                if s is None or s == steps[0]:
                    task = {"source": source, "op": op, "batch": batch, "num_steps": s,
                            "precision": ctx.precision.name, "limits": ctx.limits}  # fmt: skip
                    mem = peak_memory(ctx.device, call, prepare, task, memory)
                mem_s = None if s is None else steps[0]
                record |= {f"memory_{k}": v for k, v in mem.items()} | {"memory_at_steps": mem_s}
                records.append(ctx.stamp(record))
    return {"records": records}


def _linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares y = a + b x; None for fewer than two distinct x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def run_rf_steps(
    ctx: Context,
    source: str,
    steps: tuple[int, ...],
    batch: int,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A sampling decoder's time per image at each number of steps, and the line through them
    (fixed cost + cost per step, per image)."""
    tok = load_tokenizer(source, overrides, ctx.limits).to(ctx.device)
    label = source + (" (overridden: " + ", ".join(sorted(overrides)) + ")" if overrides else "")
    if not getattr(tok.decoder, "generative", False):
        return {"records": [], "skipped": f"{label} has no sampling decoder"}
    images = smooth_images(batch, tok.image_size).to(ctx.device)
    records = []
    for s in steps:
        call = tokenizer_call(tok, "decode", images, s, ctx.precision.name)
        timing = measure(call, ctx.device, ctx.warmup, ctx.repeats)
        flops = _flops_per_image(tok, "decode", s, ctx)
        record = {"model": label, "num_steps": s, **_record(ctx, timing, batch, flops)}
        records.append(ctx.stamp(record))
    fit = _linear_fit([r["num_steps"] for r in records], [r["seconds_per_image"] for r in records])
    return {
        "records": records,
        "fit": None if fit is None else {
            "fixed_seconds_per_image": fit[0], "seconds_per_step_per_image": fit[1],
        },
    }  # fmt: skip
