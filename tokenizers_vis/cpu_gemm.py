"""How linear layers and convolutions run on CPU during inference.

1. `autocast_weight_cache()`: under CPU bf16 / fp16 autocast without gradients, autocast casts
   every fp32 weight to the low precision on every call (for TiTok-B-64's encoder, 6 % of a bf16
   encode on an AMD EPYC core). Inside, `F.linear` and `F.conv2d` receive a copy cast once and
   kept in `cache` until the weight changes (its version counter): the values autocast would
   make, so outputs are bit-identical. `Tokenizer.encode` / `decode` run inside it; the copies
   (half the fp32 weights' memory) live as long as their parameters, or until
   `clear_weight_cache()`.

2. `onednn_linear()`: which library computes fp32 linear layers, oneDNN instead of MKL.

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
import weakref
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
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


# id(parameter) -> (weak reference to it, its version when cast, the cast copy). An entry goes when
# its parameter is freed (the reference's callback), so it lives exactly as long as the model.
_CACHE: dict[int, tuple[weakref.ref, int, Tensor]] = {}
_CAST_FUNCTIONS = {F.linear: 1, F.conv2d: 1}  # function -> position of its weight argument


def _autocast_cpu_dtype() -> torch.dtype | None:
    """The low precision CPU autocast runs matrix products in, or None when it is off."""
    if not torch.is_autocast_enabled("cpu") or torch.is_grad_enabled():
        return None
    dtype = torch.get_autocast_dtype("cpu")
    return dtype if dtype in (torch.bfloat16, torch.float16) else None


def _cached_cast(weight: nn.Parameter, dtype: torch.dtype) -> Tensor:
    key = id(weight)
    hit = _CACHE.get(key)
    # The weak reference guards against a new parameter reusing a freed one's id.
    if (
        hit is not None
        and hit[0]() is weight
        and hit[1] == weight._version
        and hit[2].dtype == dtype
    ):
        return hit[2]
    cast = weight.detach().to(dtype)
    _CACHE[key] = (
        weakref.ref(weight, lambda _, key=key: _CACHE.pop(key, None)),
        weight._version,
        cast,
    )
    return cast


def clear_weight_cache() -> None:
    """Frees every cast copy `autocast_weight_cache` keeps."""
    _CACHE.clear()


def _cacheable(weight: Any) -> bool:
    # Parameters only: a weight computed per call (a folded kernel) would never be reused.
    return (
        isinstance(weight, nn.Parameter)
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
    )


class _CastWeights(TorchFunctionMode):
    """Hands eligible linears / convolutions their weight cast once (see the module)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        where = _CAST_FUNCTIONS.get(func)
        if where is not None and len(args) > where and _cacheable(args[where]):
            args = (*args[:where], _cached_cast(args[where], self.dtype), *args[where + 1 :])
        return func(*args, **kwargs)


@contextlib.contextmanager
def autocast_weight_cache() -> Iterator[None]:
    """Inside: CPU low-precision autocast without gradients reuses weights cast once (module)."""
    dtype = _autocast_cpu_dtype()
    if dtype is None:
        yield
        return
    with _CastWeights(dtype):
        yield
