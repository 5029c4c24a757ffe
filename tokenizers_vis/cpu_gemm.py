"""Which library computes fp32 linear layers on CPU during inference: oneDNN instead of MKL.

PyTorch sends an fp32 `F.linear` on CPU to MKL's sgemm. On AMD processors MKL does not take its
fastest code path, while oneDNN (which PyTorch already uses for convolutions and for bf16 matrix
products) picks its kernels from the CPU's instruction set. Measured on the 2-core AMD EPYC with
AVX512 these tokenizers are benchmarked on (one thread, TiTok-B-64's shapes, 642 rows): oneDNN
was 1.17x to 1.39x faster per matrix product (reports/bench-amd-epyc.md).

It is opt-in, not a default: a different library sums in a different order, so outputs move in
the last bits, and our shipped models' outputs are pinned bit-for-bit
(tests/test_shipped_outputs.py). Inside `onednn_linear()` only fp32 CPU linears that need no
gradient are rerouted; anything else (autocast, another dtype or device, autograd) runs as usual.

    with torch.inference_mode(), onednn_linear():
        ids = tokenizer.encode(images).ids
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


def onednn_available() -> bool:
    """True where this PyTorch build has oneDNN (mkldnn) for CPU."""
    return torch.backends.mkldnn.is_available()


def _reroutable(x: Any, weight: Any, bias: Any) -> bool:
    tensors = [t for t in (x, weight, bias) if t is not None]
    if not all(isinstance(t, Tensor) for t in tensors):
        return False
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and x.dim() >= 2
        and not torch.is_autocast_enabled("cpu")  # autocast picks bf16 kernels (oneDNN already)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
    )


class _OneDNNLinear(TorchFunctionMode):
    """Reroutes eligible `F.linear` calls to oneDNN's fp32 matrix product."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            if _reroutable(x, weight, bias):
                return onednn_matmul(x, weight, bias)
        return func(*args, **kwargs)


def onednn_matmul(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (.. in), weight (out in), bias (out) -> (.. out): `F.linear` computed by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@contextlib.contextmanager
def onednn_linear(enabled: bool = True) -> Iterator[None]:
    """Inside: fp32 CPU linear layers without gradients run on oneDNN (see the module)."""
    if not enabled or not onednn_available():
        yield
        return
    with _OneDNNLinear():
        yield
