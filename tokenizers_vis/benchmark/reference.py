"""Section `reference`: a converted TiTok-B-64 against the reference implementation.

The reference is bytedance/1d-tokenizer, imported from a checkout the user names
(`--reference-titok DIR` or VISTOK_TITOK_REFERENCE=DIR); it is never vendored, and without it the
section is skipped with a message. Both sides compute the same thing:

- the same weights: the reference's seeded random init, saved as its state dict and converted
  by `tokenizers_vis.convert("titok", ...)` (the converter under test, not a copy of weights);
- the same batch of images (ours in [-1, 1], the reference's in [0, 1]: the converter folds the
  range into the first and last convolutions), the same precision (fp32, and bf16 autocast for
  both), the same device and threads;
- encode = images -> ids; decode = ids -> images through the MaskGIT-VQGAN pixel decoder.

vistok runs as a user gets it: fp32 linears on the library `cpu_gemm.linear_library()` picks
(oneDNN on AMD CPUs, MKL elsewhere, or $VISTOK_CPU_LINEAR). In fp32 on CPU a third contestant runs
vistok with the other library, reported in its own column; in bf16 autocast uses oneDNN anyway.

Timings are interleaved (reference, ours, ours, reference, ...) so load from other processes
falls on both alike; the speed-up vistok / reference (> 1: we are faster; the issue's goal is
1.2) is the median of the per-repeat ratios of two calls timed back to back, reported with its
quartiles and beside the ratio of the median times. Agreement is reported beside them
(fraction of equal ids, largest pixel difference), so a fast wrong conversion cannot pass for a
fast right one.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from tokenizers_vis.benchmark.common import Context, smooth_images, sync
from tokenizers_vis.cpu_gemm import cpu_linear, linear_library, onednn_available
from tokenizers_vis.precision import autocast

ENV = "VISTOK_TITOK_REFERENCE"
GOAL = 1.2
# TiTok-B-64 as published (configs/infer/TiTok/titok_b64.yaml of the reference): the model's
# hyperparameters, which its constructor reads from this nesting.
TITOK_B64 = {
    "model": {
        "vq_model": {
            "codebook_size": 4096,
            "token_size": 12,
            "use_l2_norm": True,
            "commitment_cost": 0.25,
            "vit_enc_model_size": "base",
            "vit_dec_model_size": "base",
            "vit_enc_patch_size": 16,
            "vit_dec_patch_size": 16,
            "num_latent_tokens": 64,
            "finetune_decoder": True,
        }
    },
    "dataset": {"preprocessing": {"crop_size": 256}},
}


class ReferenceUnavailable(Exception):
    """The reference checkout is missing or does not import in this environment."""


def import_reference(root: Path) -> type[torch.nn.Module]:
    """The reference's TiTok class, imported from the checkout at `root` (its top-level packages
    `modeling`, `utils` ... are on sys.path only while importing)."""
    if not (root / "modeling" / "titok.py").is_file():
        raise ReferenceUnavailable(f"{root} is not a 1d-tokenizer checkout (no modeling/titok.py)")
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("modeling.titok").TiTok
    except Exception as err:  # ImportError for its requirements, or anything its import runs
        raise ReferenceUnavailable(
            f"the reference at {root} does not import here ({type(err).__name__}: {err}); run "
            "from an environment with its requirements.txt"
        ) from None
    finally:
        sys.path.remove(str(root))


def _commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def build_pair(reference_cls: type, device: torch.device) -> tuple[Any, Any, dict[str, Any]]:
    """(reference model, our converted tokenizer, conversion info), both in eval mode."""
    from tokenizers_vis import convert
    from tokenizers_vis.tokenizer import Tokenizer

    torch.manual_seed(0)
    reference = reference_cls(TITOK_B64).eval()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "tokenizer_titok_b64.bin"
        torch.save(reference.state_dict(), src)
        (Path(tmp) / "config.json").write_text(json.dumps(TITOK_B64))  # as the hub repo has
        t0 = time.perf_counter()
        out = convert("titok", src, Path(tmp) / "converted")
        seconds = time.perf_counter() - t0
        info = json.loads((out / "config.json").read_text())["extra"]["converted_from"]
        ours = Tokenizer.from_pretrained(out)
    info = {"preset": info.get("preset"), "convert_seconds": seconds}
    return reference.to(device), ours.to(device).eval(), info


def paired(
    calls: dict[str, Callable[[], Any]], device: torch.device, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds of each call in each repeat, the calls timed back to back in alternating order
    (ABBA...) after warm-up."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            sync(device)
            start = time.perf_counter()
            calls[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def speedup(times: dict[str, list[float]], contestant: str) -> dict[str, float]:
    """How much faster `contestant` is than "reference": the median over repeats of the ratio of
    the two calls timed back to back in that repeat (slow drifts in machine load, which move
    both calls of a repeat alike, cancel in each ratio), with its quartiles; and the ratio of
    the median times, for comparison."""
    ratios = [r / c for r, c in zip(times["reference"], times[contestant], strict=True)]
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
    median = statistics.median
    return {
        "median": median(ratios),
        "low_quartile": low,
        "high_quartile": high,
        "of_medians": median(times["reference"]) / median(times[contestant]),
    }


@contextlib.contextmanager
def _inference(device: torch.device, precision: str, library: str = "auto") -> Iterator[None]:
    with torch.inference_mode(), autocast(device, precision), cpu_linear(library):
        yield


def other_library() -> str:
    """The fp32 linear library vistok does not pick by default here."""
    return "mkl" if linear_library() == "onednn" else "onednn"


def agreement(reference: Any, ours: Any, images: torch.Tensor) -> dict[str, Any]:
    """fp32: fraction of equal ids, and the largest pixel difference decoding the same ids."""
    with _inference(images.device, "fp32"):
        ref_ids = reference.encode((images + 1) / 2)[1]["min_encoding_indices"]
        ref_ids = ref_ids.reshape(images.shape[0], -1)  # (b n)
        ids = ours.encode(images).ids  # (b n 1)
        ref_pixels = reference.decode_tokens(ref_ids[:, None]).clamp(0, 1) * 2 - 1  # (b 3 h w)
        pixels = ours.decode(ref_ids[..., None])  # (b 3 h w)
    return {
        "ids_equal": float((ids[..., 0] == ref_ids).float().mean()),
        "decode_max_abs_diff": float((pixels - ref_pixels).abs().max()),
    }


def calls_for(
    reference: Any, ours: Any, images: torch.Tensor, precision: str
) -> dict[str, dict[str, Callable[[], Any]]]:
    """{op: {"reference": call, "vistok": call[, "vistok_other": call]}} on the same images and
    the same ids; the other-library contestant only in fp32 on CPU (elsewhere it is vistok)."""
    device = images.device
    unit = (images + 1) / 2  # the reference's [0, 1] input
    with _inference(device, "fp32"):
        ids = ours.encode(images).ids  # (b n 1)
    ref_ids = ids[..., 0][:, None]  # (b 1 n): its decode_tokens layout

    def run(fn: Callable[[], Any], library: str = "auto") -> Callable[[], Any]:
        def call() -> Any:
            with _inference(device, precision, library):
                return fn()

        return call

    calls = {
        "encode": {
            "reference": run(lambda: reference.encode(unit)),
            "vistok": run(lambda: ours.encode(images)),
        },
        "decode": {
            "reference": run(lambda: reference.decode_tokens(ref_ids)),
            "vistok": run(lambda: ours.decode(ids)),
        },
    }
    if precision == "fp32" and device.type == "cpu" and onednn_available():
        other = other_library()
        calls["encode"]["vistok_other"] = run(lambda: ours.encode(images), other)
        calls["decode"]["vistok_other"] = run(lambda: ours.decode(ids), other)
    return calls


def run_reference(
    ctx: Context,
    reference_dir: str | None,
    batch: int,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
) -> dict[str, Any]:
    """The section: records per (op, precision) with both speeds and their ratio."""
    root = reference_dir or os.environ.get(ENV)
    if not root:
        return {
            "records": [],
            "skipped": f"no reference checkout: pass --reference-titok DIR or set {ENV}=DIR "
            "(a bytedance/1d-tokenizer checkout; never vendored)",
        }
    root_path = Path(root).expanduser()
    try:
        reference_cls = import_reference(root_path)
    except ReferenceUnavailable as err:
        return {"records": [], "skipped": str(err)}
    reference, ours, info = build_pair(reference_cls, ctx.device)
    images = smooth_images(batch, 256).to(ctx.device)  # (b 3 256 256)
    records = []
    for precision in precisions:
        for op, calls in calls_for(reference, ours, images, precision).items():
            times = paired(calls, ctx.device, ctx.warmup, max(3, ctx.repeats))
            seconds = {name: statistics.median(t) for name, t in times.items()}
            gain = speedup(times, "vistok")
            record = {
                "model": info["preset"] or "TiTok-B-64 (no preset matched)",
                "op": op,
                "precision": precision,
                "batch": batch,
                "repeats": len(times["vistok"]),
                "reference_images_per_s": batch / seconds["reference"],
                "vistok_images_per_s": batch / seconds["vistok"],
                "speedup": gain["median"],
                "speedup_quartiles": f"{gain['low_quartile']:.2f}-{gain['high_quartile']:.2f}",
                "speedup_of_medians": gain["of_medians"],
                "linear": linear_library() if precision == "fp32" else "autocast (oneDNN)",
                # Every pair, so runs can be pooled or re-analysed later.
                "reference_seconds": times["reference"],
                "vistok_seconds": times["vistok"],
            }
            if "vistok_other" in seconds:
                record["other_linear"] = other_library()
                record["vistok_other_images_per_s"] = batch / seconds["vistok_other"]
                record["speedup_other"] = speedup(times, "vistok_other")["median"]
            record["meets_goal"] = record["speedup"] >= GOAL
            records.append(ctx.stamp(record, precision))
    return {
        "records": records,
        "reference": str(root_path),
        "reference_commit": _commit(root_path),
        "conversion": info,
        "agreement_fp32": agreement(reference, ours, images),
        "goal": GOAL,
    }
