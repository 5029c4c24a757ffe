"""vistok's C++ CPU kernels (`kernels/*.cpp`): one extension, compiled on first use.

- `attention` (`cpu_attention`): bf16 or fp32 attention, head size 64, optional key mask.
- `group_norm_silu` (`cpu_group_norm`): GroupNorm then SiLU on a channels-last tensor, in place if
  asked.

Both are for inference on x86 CPUs with AVX512-BF16 (the attention's bf16 products and the bf16
stores need it); elsewhere nothing is built and PyTorch's own ops run. The sources are compiled
once (about 45 s on a 2-core AMD EPYC; `torch.utils.cpp_extension`, a C++ compiler needed)
into vistok's cache directory, keyed by the sources, the flags, the torch version and Python's;
`tools/setup.sh` builds them. Without a compiler, or when the build fails, vistok warns once and
PyTorch's ops run. `VISTOK_CPU_KERNELS=off` turns every kernel off (nothing is built).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from tokenizers_vis.cache import cache_dir
from tokenizers_vis.precision import cpu_flags

__all__ = ["ENV", "available", "enabled", "module"]

ENV = "VISTOK_CPU_KERNELS"
KERNELS = Path(__file__).with_name("kernels")
FLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma"]
_log = logging.getLogger(__name__)


def enabled() -> bool:
    """False when `VISTOK_CPU_KERNELS` switches the kernels off (read on every call)."""
    return os.environ.get(ENV, "auto").strip().lower() not in ("off", "0", "false", "no")


def sources() -> list[Path]:
    """The extension's C++ sources (headers next to them are included by name)."""
    return sorted(KERNELS.glob("*.cpp"))


@functools.lru_cache(maxsize=1)
def _build() -> Any:
    """The compiled extension, or None where it cannot run here."""
    if platform.machine().lower() not in ("x86_64", "amd64") or "avx512_bf16" not in cpu_flags():
        return None
    digest = hashlib.sha256()
    for path in [*sources(), *sorted(KERNELS.glob("*.h"))]:
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(" ".join(FLAGS).encode() + torch.__version__.encode() + sys.version.encode())
    key = digest.hexdigest()[:16]
    build = cache_dir("extensions", f"cpu_kernels-{key}")
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its import warns that there is no CUDA: none is needed here
    try:
        from torch.utils.cpp_extension import load
    finally:
        quiet.setLevel(level)
    try:
        build.mkdir(parents=True, exist_ok=True)
        _log.info("building vistok's CPU kernels in %s (once)", build)
        return load(
            name=f"vistok_cpu_kernels_{key}",
            sources=[str(path) for path in sources()],
            build_directory=str(build),
            extra_cflags=FLAGS,
            verbose=False,
        )
    except Exception as err:  # no compiler, no headers, a read-only cache: PyTorch's ops run
        warnings.warn(
            f"vistok: the CPU kernels could not be built ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}); PyTorch's own "
            f"kernels run instead (set {ENV}=off to skip the attempt)",
            stacklevel=3,
        )
        return None


def module() -> Any:
    """The compiled extension (built on first call), or None: switched off, not this CPU, or
    the build failed."""
    return _build() if enabled() else None


def available() -> bool:
    """Whether the kernels run here (builds them on first call)."""
    return module() is not None
