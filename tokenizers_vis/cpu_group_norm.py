"""GroupNorm followed by SiLU for CPU inference, in vistok's kernel (`kernels/cpu_group_norm.cpp`).

The MaskGIT-VQGAN decoder (TiTok, One-D-Piece) runs GroupNorm then SiLU on its largest
activations, 128 channels at 256 x 256. PyTorch does that in two passes that each write a full
tensor, and the GroupNorm's output is a fresh allocation: at batch 2 it is 33.5 MB in bf16, above
glibc's 32 MB `mmap` threshold, so every call faults its pages in anew. One AMD EPYC core,
channels-last (2 128 256 256): PyTorch's GroupNorm 20.7 ms (bf16) / 39.7 ms (fp32), of which an
allocation alone (`clone` 16.2 / 32.2 ms against `copy_` 2.7 / 5.4 ms) is most, plus SiLU in place
9.3 / 7.0 ms. The kernel reads the tensor twice (statistics, then normalise + affine + SiLU) and
writes once, into a new tensor or over its input when the caller no longer needs it.

Numerics: statistics from fp32 sums of x - (the first pixel's x) over blocks of 64 pixels,
added in double; normalise, affine and SiLU in fp32 and one rounding to the tensor's dtype (bf16:
PyTorch rounds twice, after the GroupNorm and after the SiLU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokenizers_vis import cpu_kernels

__all__ = ["group_norm_silu"]


def _fits(norm: nn.GroupNorm, x: Tensor) -> bool:
    params = [p for p in (norm.weight, norm.bias) if p is not None]
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return False  # an exported or compiled graph needs PyTorch's ops, not an extension call
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.dim() == 4
        and x.shape[1] == norm.num_channels
        and x.shape[1] % 16 == 0
        and x.shape[2] * x.shape[3] * (x.shape[1] // norm.num_groups) > 1  # else PyTorch refuses
        and x.is_contiguous(memory_format=torch.channels_last)
        and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
        and not (
            torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))
        )
    )


def group_norm_silu(norm: nn.GroupNorm, x: Tensor, inplace: bool = False) -> Tensor:
    """`F.silu(norm(x))` for x (b c h w). In vistok's kernel where it applies (CPU, fp32 or bf16,
    channels-last, c a multiple of 16, no gradients, the kernels built here), else in PyTorch.

    `inplace`: the result may overwrite x (the caller no longer needs it); then no new tensor is
    allocated where the kernel runs.
    """
    module = cpu_kernels.module() if _fits(norm, x) else None
    if module is None:
        return F.silu(norm(x), inplace=inplace and not torch.is_grad_enabled())
    out = x if inplace else torch.empty_like(x)
    weight = None if norm.weight is None else norm.weight.detach()
    bias = None if norm.bias is None else norm.bias.detach()
    module.group_norm_silu(x, norm.num_groups, weight, bias, norm.eps, out)
    return out
