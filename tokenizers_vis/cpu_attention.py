"""vistok's CPU attention kernel for bf16 (and fp32) inference (`kernels/cpu_attention.cpp`).

Under CPU bf16 autocast, `cpu_gemm.inference_gemms` sends `F.scaled_dot_product_attention` here
when the kernel applies: x86 with AVX512-BF16, head size 64, no mask or a bool key mask (the same
for every query: padding, dropped tokens), no dropout, not causal, without gradients. Elsewhere
attention runs in PyTorch's fp32 flash kernel on upcast inputs. TiTok's decoder passes such a key
mask (the visible prefix of its tokens): its 12 layers took 9.5 ms each in PyTorch's kernel and
now run here (bf16 decode of TiTok-B-64, batch 2, one AMD EPYC core: 1.24x the reference, was
1.19-1.22).

Why: on CPUs with AVX512-BF16 but without AMX, PyTorch's bf16 flash kernel is slower than its
fp32 one. At TiTok-B-64's encoder shape, (2 12 321 64), one AMD EPYC core: 4.0 ms a layer here
against 8.9-9.7 ms for the upcast + fp32 flash path and 10.5 ms for the bf16 flash kernel
(medians of 15 interleaved rounds of 5 calls; 4.8 ms before the output blocks went from 6 + 1 + 1
to 4 + 4 query rows and the key packing to 16 x 16 register transposes). Numerics: bf16 products
summed in fp32, softmax in fp32, probabilities rounded to bf16 before the product with v: the
rounding of PyTorch's bf16 flash kernel, and 2-3.5x closer to fp64 than it (largest error, random
inputs; six shapes up to (2 12 321 64) measured, five of them in tests/test_cpu_attention.py),
but not exact to fp32 as the fp32 path is.

fp32 q, k, v run in the same kernel with fp32 products and probabilities, where fp32 linears run
on oneDNN in inference (`cpu_gemm`: AMD CPUs), the one place it was measured: 7.1 ms a layer
against 9.3 ms for PyTorch's fp32 flash kernel at (2 12 321 64) (8.4 ms before the changes
above), as close to fp64 (4.9e-6 vs 4.8e-6 at the largest spread tested).

The C++ source is compiled on first use with vistok's other CPU kernels (`cpu_kernels`); a
machine without a compiler, or a failed build, keeps the fp32 path (with one warning).
`VISTOK_CPU_KERNELS=off` turns the kernels off.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tokenizers_vis import cpu_kernels

__all__ = ["attention"]

HEAD = 64


def _fits(t: Any, dtype: torch.dtype) -> bool:
    return (
        isinstance(t, Tensor)
        and t.device.type == "cpu"
        and t.dtype == dtype
        and t.dim() == 4
        and t.shape[-1] == HEAD
        and t.stride(-1) == 1
        # bf16 pairs are read as 32-bit words
        and (dtype == torch.float32 or all(s % 2 == 0 for s in t.stride()[:3]))
        and (dtype == torch.float32 or t.storage_offset() % 2 == 0)
    )


def attention(
    q: Tensor, k: Tensor, v: Tensor, scale: float | None = None, attn_mask: Tensor | None = None
) -> Tensor | None:
    """softmax(scale q k^T) v for q (b h n 64), k and v (b h m 64), all bf16 or all fp32 ->
    (b h n 64) fp32 (a view of a (b n h 64) tensor, so the usual transpose back to tokens is
    free); None where the kernel does not apply (then the caller runs its own attention).

    `attn_mask`: None, or a bool key mask (True = may attend) that is the same for every head and
    query, shaped as SDPA broadcasts it: (b|1 1 1 m), (1 1 m) or (1 m). Masked keys are
    left out of the kernel's packed keys; a query with no visible key gets zeros, as PyTorch's CPU
    attention returns. Any other mask returns None.
    """
    dtype = q.dtype if isinstance(q, Tensor) else None
    if dtype not in (torch.bfloat16, torch.float32) or not cpu_kernels.enabled():
        return None
    if not (_fits(q, dtype) and _fits(k, dtype) and _fits(v, dtype)):
        return None
    b, h, _, _ = q.shape
    if k.shape[:2] != (b, h) or v.shape != k.shape or k.shape[2] == 0 or q.shape[2] == 0:
        return None
    scale = HEAD**-0.5 if scale is None else float(scale)
    if not scale > 0:
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return None
    visible = None
    if attn_mask is not None:
        visible = _key_mask(attn_mask, b, k.shape[2])
        if visible is None:
            return None
    module = cpu_kernels.module()
    if module is None:
        return None
    # The kernel reads (b n h e) strides: the same tensors, dims 1 and 2 swapped.
    out = module.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale, visible)
    return out.transpose(1, 2)  # (b h n 64)


def _key_mask(mask: Any, batch: int, keys: int) -> Tensor | None:
    """A bool SDPA mask that only selects keys -> contiguous (batch keys) bool; None otherwise."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.device.type != "cpu":
        return None
    if not 2 <= mask.dim() <= 4 or mask.requires_grad:  # SDPA itself refuses a 1-D mask
        return None
    shape = (1,) * (4 - mask.dim()) + tuple(mask.shape)
    if shape[1:] != (1, 1, keys) or shape[0] not in (1, batch):
        return None
    return mask.reshape(shape[0], keys).expand(batch, keys).contiguous()
