"""How linear layers, convolutions and attention run on CPU during inference
(`Tokenizer.encode` / `decode` run inside `inference_gemms()`; without gradients only, on CPU
only).

1. **Weights cast once** under CPU bf16 / fp16 autocast. Autocast casts every fp32 weight to the
   low precision on every call (for TiTok-B-64's encoder, 6 % of a bf16 encode on an AMD EPYC
   core). Here `F.linear` and `F.conv2d` receive a copy cast once and kept until the weight
   changes (its version counter): the values autocast would make, so outputs are bit-identical.
   The copies (half the fp32 weights' memory) live as long as their parameters, or until
   `clear_weight_cache()`. A kernel computed from a parameter (the MaskGIT-VQGAN's upsampling
   folded into a transposed conv) is kept the same way, cast once: `derived_weight`.

2. **Which library computes fp32 linears.** PyTorch sends an fp32 `F.linear` on CPU to MKL's
   sgemm. On AMD processors MKL does not take its fastest code path, while oneDNN (which PyTorch
   already uses for convolutions and for bf16 matrix products) picks its kernels from the CPU's
   instruction set. Measured on the 2-core AMD EPYC with AVX512 these tokenizers are benchmarked
   on (one thread, TiTok-B-64's shapes): oneDNN was 1.17x to 1.39x faster per matrix product
   (reports/bench-amd-epyc.md), and a TiTok-B-64 encode 1.13x faster. So `VISTOK_CPU_LINEAR=auto`
   (the default) uses oneDNN on AMD CPUs and MKL elsewhere (on Intel CPUs MKL is the fast one);
   `onednn` / `mkl` force one. A different library sums in a different order: outputs move in
   the last bits (our shipped models' pixels by up to 4e-6, ids unchanged;
   tests/test_shipped_outputs.py allows 1e-5).

3. **Weights packed once for oneDNN.** oneDNN multiplies in a blocked weight layout of its own
   and, given a plain weight, reorders it on every call. Where linears run on oneDNN (bf16 /
   fp16 autocast always, fp32 when (2) picks it) the cached weight is the reordered one
   (`torch.ops.mkldnn._reorder_linear_weight`), and the product is the very call autocast or
   `onednn_matmul` would make (`_linear_pointwise`), so the outputs are the same bits: measured
   6-30 % faster per linear at TiTok-B-64's shapes on the AMD EPYC, one thread.

   A slice of a weight (the last block of a tokenizer's transformer projects queries for some
   rows only: `layers.transformer.block_rows`) goes through `linear_slice`, which caches the
   slice's packed copy the same way.

4. **Attention in fp32 under autocast.** CPU autocast runs `F.scaled_dot_product_attention` in
   bf16: PyTorch's flash kernel, which rounds the probabilities to bf16 before the product with
   the values. Given the same q, k, v upcast to fp32 the same kernel is faster on these shapes
   (TiTok-B-64's encoder, (2 12 321 64), one AMD EPYC core: 10.6 vs 12.2 ms a layer) and exact
   to fp32 rounding instead of bf16's (tests/test_cpu_gemm.py: 10x closer to fp64 on peaked
   attention). q, k and v split from one fused projection are upcast in one pass over their
   storage. The output stays fp32; the projection after it casts it back. So bf16 outputs are
   not autocast's bits (closer to fp32's); everything in (1)-(3) is.
   Where the CPU has AVX512-BF16 and the call is plain (head size 64, no mask or a bool key mask,
   no dropout, not causal), bf16 attention runs in vistok's own kernel instead
   (`cpu_attention`): 2x faster than the fp32 path at that shape, with the rounding of
   PyTorch's bf16 flash kernel (probabilities in bf16) and closer to fp64 than it, but not
   exact to fp32. Where fp32 linears run on oneDNN (2), plain fp32 attention runs in that
   kernel's fp32 form too (4-7 % faster than PyTorch's fp32 flash kernel there, as exact).

`cpu_linear("mkl" | "onednn" | "auto")` picks (2) for a block of code, whatever the environment
says (the benchmark runs both libraries side by side):

    with cpu_linear("onednn"):
        ids = tokenizer.encode(images).ids
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from tokenizers_vis import cpu_attention, cpu_kernels

ENV = "VISTOK_CPU_LINEAR"
LIBRARIES = ("auto", "onednn", "mkl")

# id(parameter) -> (weak reference to it, its version when cast, {form: copy}), a form being a
# dtype (a cast copy) or ("packed", dtype) (oneDNN's layout). An entry goes when its parameter is
# freed (the reference's callback), so it lives exactly as long as the model.
_CACHE: dict[int, tuple[weakref.ref, int, dict[Any, Tensor]]] = {}
_FORCED: contextvars.ContextVar[str | None] = contextvars.ContextVar("cpu_linear", default=None)
# The autocast dtype while `inference_gemms` casts weights once (None elsewhere): `linear_slice`
# reads it, being called directly rather than seen by the mode.
_ACTIVE_CAST: contextvars.ContextVar[torch.dtype | None] = contextvars.ContextVar(
    "inference_gemms_cast", default=None
)
# True inside `inference_gemms`: `derived_weight` keeps what it makes only there.
_INFERENCE: contextvars.ContextVar[bool] = contextvars.ContextVar("inference", default=False)
# Whether fp32 linears currently run on oneDNN for inference (`inference_gemms` chose it).
_FP32_ONEDNN: contextvars.ContextVar[bool] = contextvars.ContextVar("fp32_onednn", default=False)
_CAST_FUNCTIONS = {F.linear: 1, F.conv2d: 1}  # function -> position of its weight argument


def onednn_available() -> bool:
    """True where this PyTorch build has oneDNN (mkldnn) for CPU."""
    return torch.backends.mkldnn.is_available()


@functools.lru_cache(maxsize=1)
def _cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def linear_library() -> str:
    """ "onednn" or "mkl": who computes fp32 CPU linears in `inference_gemms()` (module)."""
    choice = _FORCED.get() or os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in LIBRARIES:
        from tokenizers_vis.errors import VistokError

        raise VistokError(f"{ENV}={choice!r}: expected one of {', '.join(LIBRARIES)}")
    if choice == "auto":
        choice = "onednn" if _cpu_vendor() == "AuthenticAMD" else "mkl"
    return "onednn" if choice == "onednn" and onednn_available() else "mkl"


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


def onednn_matmul(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (.. in), weight (out in), bias (out) -> (.. out): `F.linear` computed by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _autocast_cpu_dtype() -> torch.dtype | None:
    """The low precision CPU autocast runs matrix products in, or None when it is off."""
    if not torch.is_autocast_enabled("cpu") or torch.is_grad_enabled():
        return None
    dtype = torch.get_autocast_dtype("cpu")
    return dtype if dtype in (torch.bfloat16, torch.float16) else None


def _cached(weight: nn.Parameter, form: Any, make: Any) -> Tensor:
    """`make(weight)` for this form of `weight`, made once while the weight stays unchanged."""
    key = id(weight)
    hit = _CACHE.get(key)
    # The weak reference guards against a new parameter reusing a freed one's id.
    if hit is None or hit[0]() is not weight or hit[1] != weight._version:
        gone = weakref.ref(weight, lambda _, key=key: _CACHE.pop(key, None))
        hit = _CACHE[key] = (gone, weight._version, {})
    forms = hit[2]
    if form not in forms:
        forms[form] = make(weight.detach())
    return forms[form]


def _cached_cast(weight: nn.Parameter, dtype: torch.dtype) -> Tensor:
    return _cached(weight, dtype, lambda w: w.to(dtype))


def _cached_packed(
    weight: nn.Parameter, dtype: torch.dtype, rows: tuple[int, int] | None = None
) -> Tensor:
    """`weight` (or its output rows start..stop) in `dtype`, reordered into oneDNN's layout for
    linear layers."""
    part = slice(None) if rows is None else slice(*rows)
    return _cached(
        weight,
        ("packed", dtype) if rows is None else ("packed", dtype, *rows),
        lambda w: torch.ops.mkldnn._reorder_linear_weight(w[part].to(dtype), None),
    )


@functools.lru_cache(maxsize=4)
def _packs(dtype: torch.dtype) -> bool:
    """Whether oneDNN runs `dtype` linears natively here (else autocast's own path runs)."""
    if not onednn_available():
        return False
    if dtype == torch.float32:
        return True
    check = {
        torch.bfloat16: "_is_mkldnn_bf16_supported",
        torch.float16: "_is_mkldnn_fp16_supported",
    }
    fn = getattr(torch.ops.mkldnn, check.get(dtype, ""), None)
    try:
        return bool(fn()) if fn is not None else False
    except RuntimeError:
        return False


def _packed_linear(
    x: Any, weight: Any, bias: Any, dtype: torch.dtype, rows: tuple[int, int] | None = None
) -> Tensor | None:
    """`F.linear` as autocast to `dtype` (or fp32 oneDNN) computes it, with the packed weight
    (`rows`: only output features start..stop, the weight's and bias's rows sliced); None where
    this call is not one we reroute."""
    if not (
        _cacheable(weight)
        and _packs(dtype)
        and isinstance(x, Tensor)
        and x.device.type == "cpu"
        and x.dim() >= 2
        and x.dtype in (torch.float32, dtype)
        and (bias is None or (isinstance(bias, Tensor) and bias.device.type == "cpu"))
        and (rows is None or bias is None or _cacheable(bias))  # a sliced bias is kept too
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    ):
        return None
    if rows is not None and bias is not None:
        bias = _cached(bias, (dtype, *rows), lambda b: b[slice(*rows)].to(dtype))
    elif bias is not None and bias.dtype != dtype:
        bias = _cached_cast(bias, dtype) if _cacheable(bias) else bias.to(dtype)
    return onednn_matmul(x.to(dtype), _cached_packed(weight, dtype, rows), bias)


_SDPA_OPTIONS = ("attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _attention(args: tuple, kwargs: dict, dtype: torch.dtype) -> Tensor | None:
    """Low-precision CPU attention without gradients: vistok's bf16 kernel where it applies
    (`cpu_attention`), else fp32 flash on upcast inputs; None where neither reroutes the call."""
    if dtype == torch.bfloat16:
        out = _kernel_attention(args, kwargs)
        if out is not None:
            return out
    return _fp32_attention(args, kwargs, dtype)


def _kernel_attention(args: tuple, kwargs: dict) -> Tensor | None:
    """An `F.scaled_dot_product_attention` call in vistok's kernel (`cpu_attention`: bf16 or
    fp32, head size 64, no mask or a key mask, no dropout, not causal); None where it does not
    apply."""
    if len(args) < 3:
        return None
    options = {**dict(zip(_SDPA_OPTIONS, args[3:], strict=False)), **kwargs}
    if options.get("dropout_p") or options.get("is_causal") or options.get("enable_gqa"):
        return None
    return cpu_attention.attention(*args[:3], options.get("scale"), options.get("attn_mask"))


def _fp32_attention(args: tuple, kwargs: dict, dtype: torch.dtype) -> Tensor | None:
    """`F.scaled_dot_product_attention` of low-precision CPU q, k, v computed in fp32 (the output
    stays fp32: the projection after it casts it back); None where this call is not one we
    reroute."""
    q, k, v, *rest = (*args, None, None, None)[: max(3, len(args))]
    if not all(
        isinstance(t, Tensor) and t.device.type == "cpu" and t.dtype == dtype for t in (q, k, v)
    ) or (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))):
        return None
    mask = rest[0] if rest else kwargs.get("attn_mask")
    if isinstance(mask, Tensor) and mask.is_floating_point():
        if rest:
            rest[0] = mask.float()
        else:
            kwargs = {**kwargs, "attn_mask": mask.float()}
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(*_upcast_views((q, k, v)), *rest, **kwargs)


def _upcast_views(tensors: tuple[Tensor, ...]) -> list[Tensor]:
    """fp32 copies of `tensors`. Views that together cover one storage (q, k, v split from one
    fused projection) are cast in one contiguous pass over that storage and viewed again with
    their own sizes, strides and offsets: 3-5x cheaper than casting each strided view."""
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.untyped_storage().data_ptr(), []).append(i)
    out: list[Tensor] = list(tensors)
    for members in groups.values():
        first = tensors[members[0]]
        size = first.untyped_storage().nbytes() // first.element_size()
        if len(members) == 1 or size > sum(tensors[i].numel() for i in members):
            for i in members:
                out[i] = tensors[i].float()
            continue
        whole = first.as_strided((size,), (1,), 0).float()  # the storage, in memory order
        for i in members:
            t = tensors[i]
            out[i] = whole.as_strided(t.shape, t.stride(), t.storage_offset())
    return out


def linear_slice(x: Tensor, layer: nn.Linear, start: int, stop: int) -> Tensor:
    """x (.. in) -> (.. stop-start): output features start..stop of `layer` (its weight and bias
    rows sliced). Inside `inference_gemms` under autocast the slice is cast and packed once and
    kept like a whole weight; a plain slice would be a new tensor, cast again on every call."""
    weight, bias = layer.weight, layer.bias
    dtype = _ACTIVE_CAST.get()
    if dtype is not None:
        out = _packed_linear(x, weight, bias, dtype, (start, stop))
        if out is not None:
            return out
    return F.linear(x, weight[start:stop], None if bias is None else bias[start:stop])


def linear_gelu(x: Tensor, layer: nn.Linear) -> Tensor | None:
    """`F.gelu(layer(x))` (erf GELU) as one oneDNN call with the GELU fused into the product's
    output pass, where `inference_gemms` runs fp32 linears on oneDNN; None elsewhere (the caller
    runs the two ops). Same values as the two ops (bit-identical on the AMD EPYC measured; the
    test allows 1e-6 relative), 0.8 ms less per TiTok-B-64 MLP (27.8 + 1.7 -> 28.7 ms, batch 2,
    one AMD EPYC core). Not under autocast: fused, bf16 would round once instead of twice."""
    weight, bias = layer.weight, layer.bias
    if not (
        _FP32_ONEDNN.get()
        and _ACTIVE_CAST.get() is None
        and _cacheable(weight)
        and _reroutable(x, weight, bias)
    ):
        return None
    packed = _cached_packed(weight, torch.float32)
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "gelu", [], "none")


def derived_weight(weight: Tensor, form: str, make: Callable[[Tensor], Tensor]) -> Tensor:
    """`make(weight)`: a tensor computed from a parameter (a kernel folded from it). Inside
    `inference_gemms` without gradients it is made once and kept, like a cast weight, while the
    parameter is unchanged, in the dtype CPU autocast computes products in (the copy autocast
    would cast on every call); elsewhere it is made on every call. `form` names what `make`
    computes (one parameter may have several)."""
    if not (_INFERENCE.get() and _cacheable(weight) and not torch.is_grad_enabled()):
        return make(weight)
    dtype = _ACTIVE_CAST.get()
    if dtype is None:
        return _cached(weight, ("derived", form), make)
    return _cached(weight, ("derived", form, dtype), lambda w: make(w).to(dtype))


def clear_weight_cache() -> None:
    """Frees every cast copy `inference_gemms` keeps."""
    _CACHE.clear()


def _cacheable(weight: Any) -> bool:
    # Parameters only: a tensor computed per call would never be reused (`derived_weight` keys
    # what it derives on the parameter).
    return (
        isinstance(weight, nn.Parameter)
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
    )


class _Gemms(TorchFunctionMode):
    """Casts weights once and reroutes attention (vistok's bf16 kernel, else fp32) for autocast
    (`cast` = its dtype), or sends fp32 linears to oneDNN; `fp32_attention`: plain fp32
    attention runs in vistok's kernel (`cpu_attention`)."""

    def __init__(self, cast: torch.dtype | None, onednn: bool, fp32_attention: bool = False):
        super().__init__()
        self.cast, self.onednn, self.fp32_attention = cast, onednn, fp32_attention

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            if self.cast is not None:
                out = _attention(args, kwargs, self.cast)
            elif self.fp32_attention:
                out = _kernel_attention(args, kwargs)
            else:
                out = None
            if out is not None:
                return out
        if func is F.linear and len(args) >= 2 and (self.cast is not None or self.onednn):
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            if self.cast is not None or _reroutable(x, weight, bias):
                out = _packed_linear(x, weight, bias, self.cast or torch.float32)
                if out is not None:
                    return out
        if self.cast is not None:
            where = _CAST_FUNCTIONS.get(func)
            if where is not None and len(args) > where and _cacheable(args[where]):
                args = (*args[:where], _cached_cast(args[where], self.cast), *args[where + 1 :])
        elif self.onednn and func is F.linear:
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            if _reroutable(x, weight, bias):
                return onednn_matmul(x, weight, bias)
        return func(*args, **kwargs)


@contextlib.contextmanager
def _gemms(onednn: bool) -> Iterator[None]:
    cast = _autocast_cpu_dtype()
    if cast is None and not onednn:
        yield  # nothing to change: no mode, no per-call overhead
        return
    token = _ACTIVE_CAST.set(cast)
    fused = _FP32_ONEDNN.set(onednn and cast is None)
    # fp32 attention in vistok's kernel only where fp32 inference is rerouted already (oneDNN
    # linears: AMD CPUs), the one place it was measured faster than PyTorch's fp32 flash kernel.
    fp32_attention = onednn and cast is None and cpu_kernels.available()
    try:
        with _Gemms(cast, onednn, fp32_attention):
            yield
    finally:
        _FP32_ONEDNN.reset(fused)
        _ACTIVE_CAST.reset(token)


@contextlib.contextmanager
def inference_gemms() -> Iterator[None]:
    """Inside: the module's inference policy (weights cast once under autocast; fp32 linears on
    the library `linear_library()` names)."""
    token = _INFERENCE.set(True)
    try:
        with _gemms(linear_library() == "onednn"):
            yield
    finally:
        _INFERENCE.reset(token)


@contextlib.contextmanager
def cpu_linear(library: str) -> Iterator[None]:
    """Inside: `linear_library()` follows `library` ("auto", "onednn" or "mkl"), not the
    environment's $VISTOK_CPU_LINEAR."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
    token = _FORCED.set(library)
    try:
        yield
    finally:
        _FORCED.reset(token)


@contextlib.contextmanager
def onednn_linear(enabled: bool = True) -> Iterator[None]:
    """Inside: every fp32 CPU linear without gradients runs on oneDNN, also outside
    `inference_gemms` (`enabled=False`: this context does nothing)."""
    if not enabled or not onednn_available():
        yield
        return
    with cpu_linear("onednn"), _Gemms(None, True):
        yield
