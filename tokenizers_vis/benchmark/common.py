"""What every benchmark section shares: timing with warm-up and medians, FLOP counting, the
record stamp (machine, precision, torch, threads) and synthetic inputs.

FLOPs are counted, never estimated: `count_flops` (tokenizers_vis/flops.py) runs the call under
PyTorch's `FlopCounterMode`, CPU attention included.
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tokenizers_vis.limits import DEFAULT_LIMITS, Limits
from tokenizers_vis.precision import PrecisionChoice, cpu_model_name


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall time covers the computation."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], Any],
    device: torch.device,
    warmup: int,
    repeats: int,
    warmup_fn: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Median wall time of `repeats` calls after `warmup` untimed ones (of `warmup_fn` if given:
    a cheaper call that warms the same kernels)."""
    for _ in range(warmup):
        (warmup_fn or fn)()
    sync(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return {
        "seconds_median": statistics.median(times),
        "seconds_min": min(times),
        "seconds_all": times,
        "warmup": warmup,
        "repeats": len(times),
    }


def slug(name: str) -> str:
    """ "AMD EPYC 7B13 64-Core Processor" -> "amd-epyc-7b13-64-core-processor"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def device_name(device: torch.device) -> str:
    """The CPU's model name, or the GPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model_name()


@dataclass(frozen=True)
class Context:
    """What a section runs with: the device, the precision chosen for it, the repeat counts and
    the stamp every record carries."""

    device: torch.device
    precision: PrecisionChoice
    warmup: int
    repeats: int
    peak: dict[str, float]  # measured matmul FLOP/s by dtype name ("fp32", "bf16")
    limits: Limits = DEFAULT_LIMITS  # loading pretrained models (`vistok bench --max-...`)

    def stamp(self, record: dict[str, Any], precision: str | None = None) -> dict[str, Any]:
        """`record` with the machine, precision, torch version and threads in front."""
        env = {
            "device": self.device.type,
            "device_name": device_name(self.device),
            "cpu": cpu_model_name(),
            "precision": precision or self.precision.name,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        return env | record

    def fraction(self, flops_per_s: float | None, precision: str | None = None) -> float | None:
        """Achieved FLOP/s as a fraction of the measured matmul peak in this precision."""
        peak = self.peak.get(precision or self.precision.name)
        return flops_per_s / peak if peak and flops_per_s is not None else None


def environment() -> dict[str, Any]:
    """The run's metadata (the report's `meta`)."""
    return {
        "cpu": cpu_model_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n 3 size size) float in [-1, 1]: random colour fields upsampled from 4x4, image-like."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1  # (n 3 4 4)
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")
