"""FLOPs counted, never estimated: PyTorch's `FlopCounterMode` (matrix products, convolutions,
attention; 2 FLOPs a multiply-add) over the calls that actually run.

PyTorch's own table lacks the CPU flash-attention kernel that `F.scaled_dot_product_attention`
dispatches to on CPU, so a ViT's attention would count as zero there; we map it (and its
backward) to the formula the table uses for the GPU kernels. The benchmark (`count_flops`) and
training (`TokenizerSystem.flops_per_batch`, read by Lightning's `ThroughputMonitor`) both count
through `flop_counter`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop, sdpa_flop

__all__ = ["count_flops", "flop_counter"]


def _as_registered(formula: Callable[..., int]) -> Callable[..., int]:
    """`formula` as FlopCounterMode's table holds it: already taking tensors (the module's
    registered formulas are wrapped once; `custom_mapping` would wrap them again)."""

    def count(*args: Any, **kwargs: Any) -> int:
        return formula(*args, **kwargs)

    count._get_raw = True  # type: ignore[attr-defined]
    return count


_aten = torch.ops.aten
_MISSING_FLOPS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _as_registered(sdpa_flop),
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _as_registered(sdpa_backward_flop),
}


def flop_counter() -> FlopCounterMode:
    """A silent counter (enter it, run, read `get_total_flops()`), CPU attention included."""
    return FlopCounterMode(display=False, custom_mapping=_MISSING_FLOPS)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of `fn` (forward and, if it runs one, backward), counted by dispatch."""
    with flop_counter() as counter:
        fn()
    return int(counter.get_total_flops())
