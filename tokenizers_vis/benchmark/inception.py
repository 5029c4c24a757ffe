"""The evaluation's own speed: TF-Inception features (images/s, fraction of the fp32 matmul
peak), the cheap exact ways to make them faster, and how far their features move.

The reference is the previous default path: weights in contiguous (NCHW) layout, `no_grad`,
`batch` images a call (the evaluation's default batch size). Variants change one thing at a
time: the memory layout (`channels_last`: oneDNN / cuDNN run NHWC convolutions without
reordering every activation), the grad mode (`inference_mode`), the batch size, the number of
threads. Every variant's features are compared with the reference's on the same images: max
abs difference, and that relative to the largest reference feature (the features are
non-negative pooled activations, many near zero, so an elementwise ratio would mean nothing).
`library_default` times `tokenizers_vis.metrics.extract_features` with `load_tf_inception()`
as it comes, i.e. what evaluation runs now.

`suite` times the evaluation suite's pass (`forward_evaluation`: pool, spatial and, where the
weights have it, logits in one pass) the way the imagenet256 protocol runs it: 256 px uint8
images, batch 64, channels-last fp32. Its FLOP/s are given as a fraction of the fp32 peak and,
where the CPU has native bf16, of the bf16 peak too. A bf16 copy of the network is timed beside
it with its features' deviation: it shows what bf16 would buy, and why the metric stays fp32
(its pool features move by ~5e-2 relative, far past the 1e-4 the evaluation accepts).

Where that deviation comes from (4-8 images, README "Measurement notes"): no layer in
particular. bf16's 8-bit significand at every convolution does it: rounding only the weights
moves the features 1.4-2.0e-2, rounding only the convolutions' inputs 2.4e-2; BatchNorm kept in
fp32, or folded into the weights in fp32 first, helps little (2.6-3.2e-2 against 3.4-3.9e-2 for
the whole network in bf16, on the same images and with the same fp32 resize). Each stage
alone in bf16 moves them 2.4e-3 (Mixed_7a) to 2.3e-2 (the first conv); keeping the first four
convolutions in fp32 leaves 1.8-2.3e-2, keeping everything through Mixed_6e 0.6-0.8e-2. No
split reaches 1e-3 with a useful share of the FLOPs in bf16, so there is no mixed variant here.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from tokenizers_vis.benchmark.common import Context, measure, smooth_images
from tokenizers_vis.data.transforms import to_uint8
from tokenizers_vis.flops import count_flops

TOLERANCE = 1e-4  # relative: what counts as "exact" for switching the library's default
GRAD_MODES: dict[str, Callable[[], Any]] = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def layout_of(net: nn.Module) -> str:
    weight = next(m.weight for m in net.modules() if isinstance(m, nn.Conv2d))
    return "channels_last" if weight.is_contiguous(memory_format=torch.channels_last) and \
        not weight.is_contiguous() else "contiguous"  # fmt: skip


def _features(
    net: nn.Module, images: Tensor, batch: int, mode: str, device: torch.device
) -> Tensor:
    with GRAD_MODES[mode]():
        parts = [net(images[i : i + batch].to(device)).float().cpu()
                 for i in range(0, images.shape[0], batch)]  # fmt: skip
    return torch.cat(parts).clone()  # (n 2048); clone: a normal tensor even from inference_mode


@contextlib.contextmanager
def _threads(n: int | None) -> Any:
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _compare(features: Tensor, reference: Tensor) -> dict[str, Any]:
    diff = (features - reference).abs().max().item()
    relative = diff / max(reference.abs().max().item(), 1e-30)
    return {"max_abs_diff": diff, "relative_diff": relative, "exact": diff == 0.0,
            "within_tolerance": relative <= TOLERANCE}  # fmt: skip


def run_inception(
    ctx: Context,
    num_images: int,
    batch: int,
    batches: tuple[int, ...] = (),
    grad_modes: tuple[str, ...] = ("no_grad", "inference_mode"),
    threads: tuple[int, ...] = (),
    image_size: int = 32,
    suite_batch: int = 64,
) -> dict[str, Any]:
    """Time the reference path, its variants and the library's default on `num_images` images
    of `image_size` px (resized to 299 inside, as evaluation does)."""
    from tokenizers_vis.layers.inception import load_tf_inception
    from tokenizers_vis.metrics import extract_features

    try:
        net = load_tf_inception()
    except (FileNotFoundError, ValueError) as err:
        return {"records": [], "skipped": f"no TF-Inception weights: {err}"}
    device = ctx.device
    default_layout = layout_of(net)
    nets = {name: copy.deepcopy(net).to(device, memory_format=fmt) for name, fmt in LAYOUTS.items()}
    images = to_uint8(smooth_images(num_images, image_size))  # (n 3 s s) uint8
    one = images[:1].to(device)
    flops = count_flops(lambda: nets["contiguous"](one))
    reference = _features(nets["contiguous"], images, batch, "no_grad", device)

    plan = [(layout, mode, batch, None) for layout in LAYOUTS for mode in grad_modes]
    plan += [("channels_last", "no_grad", b, None) for b in batches if b != batch]
    plan += [("channels_last", "no_grad", batch, t) for t in threads]
    records = []
    for layout, mode, b, n_threads in plan:
        with _threads(n_threads):
            record = {"path": "variant", "layout": layout, "grad_mode": mode, "batch": b}
            run = functools.partial(_features, nets[layout], images, b, mode, device)
            records.append(_timed(ctx, record, run, flops, reference))
    net = net.to(device)
    parts = [images[i : i + batch] for i in range(0, num_images, batch)]
    run = functools.partial(extract_features, parts, net, progress=False)
    record = {"path": "library_default", "layout": default_layout, "grad_mode": "no_grad",
              "batch": batch}  # fmt: skip
    records.append(_timed(ctx, record, run, flops, reference))
    base = records[0]["images_per_s"]
    for r in records:
        r["speedup"] = r["images_per_s"] / base
    exact = [r for r in records if r["path"] == "variant" and r["within_tolerance"]]
    best = max(exact, key=lambda r: r["images_per_s"])
    suite_images = suite_batch if num_images >= suite_batch // 2 else num_images
    return {
        "suite_records": run_suite(ctx, nets["channels_last"], suite_images, suite_batch),
        "records": records,
        "gflop_per_image": flops / 1e9,
        "tolerance": TOLERANCE,
        "library_default_layout": default_layout,
        "fastest_within_tolerance": {k: best[k] for k in ("layout", "grad_mode", "batch", "threads",
                                                          "speedup", "relative_diff")},
        "library_default_speedup": records[-1]["speedup"],
    }  # fmt: skip


def _timed(
    ctx: Context, record: dict, run: Callable[[], Tensor], flops: int, reference: Tensor
) -> dict[str, Any]:
    """Time `run` (features of all images) and compare its last features with `reference`."""
    last: list[Tensor] = []

    def call() -> None:
        last[:] = [run()]

    timing = measure(call, ctx.device, ctx.warmup, ctx.repeats)
    n, seconds = reference.shape[0], timing["seconds_median"]
    achieved = flops * n / seconds
    record |= {
        "images": n, "images_per_s": n / seconds, "achieved_gflop_per_s": achieved / 1e9,
        "fraction_of_peak": ctx.fraction(achieved, "fp32"), **_compare(last[0], reference),
        "timing": timing,
    }  # fmt: skip
    return ctx.stamp(record, precision="fp32")


def _suite_features(net: nn.Module, images: Tensor, batch: int, device: torch.device) -> Tensor:
    with torch.no_grad():
        parts = [net.forward_evaluation(images[i : i + batch].to(device))["pool"].float().cpu()
                 for i in range(0, images.shape[0], batch)]  # fmt: skip
    return torch.cat(parts)  # (n 2048)


def run_suite(
    ctx: Context, net: nn.Module, num_images: int, batch: int, image_size: int = 256
) -> list[dict[str, Any]]:
    """The protocol's feature pass (fp32), and a bf16 copy for comparison where bf16 is native."""
    device = ctx.device
    images = to_uint8(smooth_images(num_images, image_size, seed=1))  # (n 3 256 256) uint8
    batch = min(batch, num_images)
    flops = count_flops(lambda: net.forward_evaluation(images[:1].to(device)))
    reference = _suite_features(net, images, batch, device)
    variants = {"suite_fp32": (net, "fp32")}
    if "bf16" in ctx.peak:
        variants["suite_bf16"] = (copy.deepcopy(net).to(torch.bfloat16), "bf16")
    records = []
    for path, (model, precision) in variants.items():
        record = {"path": path, "layout": layout_of(model), "grad_mode": "no_grad",
                  "batch": batch, "image_size": image_size, "weights_dtype": precision}  # fmt: skip
        run = functools.partial(_suite_features, model, images, batch, device)
        record = _timed(ctx, record, run, flops, reference)
        record["precision"] = precision
        record["fraction_of_peak"] = ctx.fraction(record["achieved_gflop_per_s"] * 1e9, precision)
        record["fraction_of_bf16_peak"] = ctx.fraction(record["achieved_gflop_per_s"] * 1e9,
                                                       "bf16")  # fmt: skip
        records.append(record)
    return records
