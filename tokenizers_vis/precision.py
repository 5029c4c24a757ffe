"""Where and in which floating-point precision to compute, chosen from what the hardware runs.

bf16 is only fast where the processor has bf16 arithmetic: on CPUs that means AVX512-BF16 or
AMX; elsewhere (AVX2-only x86, for one) PyTorch emulates it, and a bf16 2048x2048 matmul ran
300x slower than fp32 on a 2-core AMD EPYC (0.3 vs 105 GFLOP/s), a bf16-autocast training step
19x slower. So nothing in vistok hard-codes bf16 on CPU: every place that would autocast asks
`autocast_dtype(device, precision)`, and `precision="auto"` (the default) picks bf16 only where
it is native. An explicit "bf16" or "fp32" always wins, for benchmarks and for users who know.

    choice = resolve_precision("auto", "cpu")    # PrecisionChoice(dtype=float32, reason=...)
    with autocast(device, "auto"):               # no-op on fp32, bf16 autocast where native
        ...
    lightning_precision("auto", "cpu")           # "32-true" or "bf16-mixed", with the reason
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from tokenizers_vis.errors import VistokError

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
_NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")


class DeviceError(VistokError):
    """A device or precision name this machine cannot give (`--device`, `--precision`)."""


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


@functools.lru_cache(maxsize=1)
def cpu_bf16_native() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16).

    Asks PyTorch's own CPU probe first (`torch.cpu.get_capabilities()`, the cpuinfo its kernels
    dispatch on), then falls back to the flags in /proc/cpuinfo.
    """
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        try:
            caps = get_capabilities()
            return any(bool(caps.get(flag)) for flag in _NATIVE_FLAGS)
        except (RuntimeError, AttributeError):
            pass
    return bool(cpu_flags() & set(_NATIVE_FLAGS))


def cpu_model_name() -> str:
    """The CPU's model name, for reports and start-up messages."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


@dataclass(frozen=True)
class PrecisionChoice:
    """The compute dtype picked for a device and why (say it at start-up)."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"


def resolve_precision(precision: str, device: torch.device | str) -> PrecisionChoice:
    """Turn "auto" / "bf16" / "fp32" into a dtype for `device`, with the reason."""
    if precision not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp32":
        return PrecisionChoice(torch.float32, "fp32 asked for")
    if precision == "bf16":
        return PrecisionChoice(torch.bfloat16, "bf16 asked for")
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return PrecisionChoice(torch.bfloat16, "the GPU runs bf16 natively")
        return PrecisionChoice(torch.float32, "this GPU has no native bf16")
    if device.type == "cpu":
        cpu = cpu_model_name()
        if cpu_bf16_native():
            return PrecisionChoice(torch.bfloat16, f"{cpu} has native bf16 (AVX512-BF16/AMX)")
        return PrecisionChoice(
            torch.float32,
            f"{cpu} has no native bf16 (no avx512_bf16 / amx_bf16): bf16 would be emulated, "
            "many times slower than fp32",
        )
    return PrecisionChoice(torch.float32, f"no bf16 policy for {device.type}")


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The dtype to autocast to on `device`, or None for plain fp32."""
    choice = resolve_precision(precision, device)
    return None if choice.dtype == torch.float32 else choice.dtype


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str = "auto") -> Iterator[PrecisionChoice]:
    """Autocast to the chosen dtype on `device` (nothing at all for fp32); yields the choice."""
    choice = resolve_precision(precision, device)
    device = torch.device(device)
    if choice.dtype == torch.float32:
        yield choice
        return
    with torch.autocast(device_type=device.type, dtype=choice.dtype):
        yield choice


def lightning_precision(precision: str, accelerator: str) -> tuple[str, str]:
    """Lightning's `Trainer(precision=...)` value for "auto" / "bf16" / "fp32" and the reason.

    `accelerator` is the Trainer's ("cpu", "gpu", "cuda", "auto").
    """
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        device = "cuda"
    else:
        device = "cpu"
    choice = resolve_precision(precision, device)
    return ("bf16-mixed" if choice.dtype == torch.bfloat16 else "32-true"), choice.reason


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"; DeviceError otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:  # "Expected one of cpu, cuda, ... device type"
        raise DeviceError(f"device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r}: CUDA is not available here")
    return device
