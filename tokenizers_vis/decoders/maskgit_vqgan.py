"""MaskGIT-VQGAN pixel decoder: a grid of code distributions -> images.

Papers: Esser et al., "Taming Transformers for High-Resolution Image Synthesis" (VQGAN, 2021);
Chang et al., "MaskGIT: Masked Generative Image Transformer" (2022), whose VQGAN drops the
non-local (attention) layers. TiTok's stage-2 decoders (Yu et al., 2024) and One-D-Piece (Miwa et
al., 2025) predict, for every output patch, a distribution over this VQGAN's 1,024 codes and decode
the expected code embedding with its convolutional decoder (30.5 M parameters at the
published size). Registered as a pixel decoder, so the ViT decoder's `pixel_decoder` spec names it.

Architecture: a 3x3 conv in; residual blocks at the coarsest width; then, coarse to fine, residual
blocks per level and (except at the finest level) a nearest x2 upsample with a 3x3 conv; GroupNorm,
SiLU and a 3x3 conv out. A residual block is GroupNorm(32 groups, eps 1e-6), SiLU, 3x3 conv (no
bias), twice. Where a block changes width, the published network's shortcut is a 1x1 conv of the
block's *output* (not of its input): the released weights were trained with it, so it is kept.

Changes: sized by parameters so tests build a tiny one. The nearest x2 upsampling and 3x3 conv run
as one 4x4, stride-2 transposed convolution on the coarse grid (`upsample_conv`): the same
function, 16 instead of 36 multiply-adds per coarse pixel and channel pair, and no x4 copy of the
input (the four upsampling convs are a quarter of the decoder's work at the published size).
The activations run channels-last (NHWC): oneDNN's convolutions and GroupNorm take that layout
without a reorder per layer, 1.25x (fp32) and 1.18x (bf16) faster for the published decoder on
one AMD EPYC core (batch 2, 256 px); outputs equal to 4e-5 in fp32. In inference, GroupNorm +
SiLU run as one pass in vistok's CPU kernel where it is built (`cpu_group_norm`), over tensors
nothing reads again, and the residual sum is added in place: the full-resolution activations
(33.5 MB at batch 2 in bf16) are fresh `mmap`s that fault every page in, so each allocation
avoided counts (TiTok-B-64 decode, one AMD EPYC core: 1.24 -> 1.31x the reference in bf16,
1.25 -> 1.31x in fp32).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import Tensor, nn

from tokenizers_vis.cpu_gemm import derived_weight
from tokenizers_vis.cpu_group_norm import group_norm_silu
from tokenizers_vis.registry import PIXEL_DECODERS


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResBlock(nn.Module):
    """(b c_in h w) -> (b c_out h w); see the module docstring for the shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = nn.Conv2d(out_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # Without autograd, tensors no one reads again are overwritten instead of allocated anew
        # (these are the largest activations here, and a fresh one faults all its pages in):
        # conv1's output by its own GroupNorm + SiLU, conv2's by the residual sum.
        h = self.conv1(group_norm_silu(self.norm1, x))  # (b c_out h w)
        h = self.conv2(group_norm_silu(self.norm2, h, inplace=True))  # (b c_out h w)
        # Published quirk: when the width changes, the skip path is a projection of h itself.
        skip = x if self.shortcut is None else self.shortcut(h)
        if torch.is_grad_enabled() or h.dtype != skip.dtype or h.shape != skip.shape:
            return h + skip
        return h.add_(skip)


class UpStage(nn.Module):
    """Residual blocks at one resolution, then optionally x2 nearest upsampling and a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, upsample: bool):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.blocks = nn.ModuleList(ResBlock(a, b) for a, b in itertools.pairwise(widths))
        self.upsample = nn.Conv2d(out_channels, out_channels, 3, padding=1) if upsample else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        if self.upsample is not None:
            x = upsample_conv(x, self.upsample)  # (b c 2h 2w)
        return x


# TAPS[t, k] = 1 where 3x3-kernel row k, applied after nearest x2 upsampling, lands in tap t of
# the stride-2 transposed conv (padding 1) that writes fine rows 2i - 1 + t from coarse row i:
# fine row 2i reads fine rows 2i - 1, 2i, 2i + 1 = coarse i - 1, i, i (taps 3, 1, 1) and fine
# row 2i + 1 reads coarse i, i, i + 1 (taps 2, 2, 0). Columns fold alike.
TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def upsample_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """`conv(nearest_x2(x))` for a 3x3, padding 1 `conv`, computed on the coarse grid: x (b c h w)
    -> (b o 2h 2w), in x's memory format.

    Each fine pixel (2i + a, 2j + b) sees a 2x2 window of coarse pixels through the 3x3 kernel
    with rows and columns summed per `TAPS`: a 4x4, stride-2 transposed convolution, which writes
    the interleaved fine grid directly (no padded copy of the input, no per-phase scatter).
    """
    # Inference folds once per weight (`derived_weight`): folding the published 512-channel
    # kernel alone takes 4-6 ms a call (one AMD EPYC core).
    kernel = derived_weight(conv.weight, "nearest_x2_conv", _fold_nearest_x2)  # (c o 4 4)
    return F.conv_transpose2d(x, kernel, conv.bias, stride=2, padding=1)  # (b o 2h 2w)


def _fold_nearest_x2(weight: Tensor) -> Tensor:
    """3x3 kernel (o c 3 3) -> the equal 4x4 transposed-conv kernel (c o 4 4), computed in the
    weight's own precision (autocast off; meta tensors, built to count, have no autocast)."""
    taps = TAPS.to(weight)
    plain = (
        torch.autocast(weight.device.type, enabled=False)
        if weight.device.type != "meta"
        else nullcontext()
    )
    with plain:
        return einsum(taps, taps, weight, "t k, s l, o i k l -> i o t s")


@PIXEL_DECODERS.register("maskgit_vqgan")
class MaskGITVQGANDecoder(nn.Module):
    """Code-probability grid (b h w c) -> images (b 3 h*f w*f), f = 2 ** (len(channel_mult) - 1).

    Args:
        codebook_size: number of VQGAN codes (1,024 published).
        code_dim: code embedding size (256 published).
        channels: base width (128 published); every width must be a multiple of 32 (GroupNorm).
        channel_mult: width multipliers per level, finest first ((1, 1, 2, 2, 4) published).
        num_res_blocks: residual blocks per level and at the coarsest width (2 published).
    """

    def __init__(
        self,
        codebook_size: int = 1024,
        code_dim: int = 256,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
    ) -> None:
        super().__init__()
        widths = [channels * m for m in channel_mult]
        if any(w % 32 for w in widths):
            raise ValueError(f"every width must be a multiple of 32 (GroupNorm), got {widths}")
        self.codebook_size = codebook_size
        self.upsample_factor = 2 ** (len(widths) - 1)
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim) / codebook_size)
        self.conv_in = nn.Conv2d(code_dim, widths[-1], 3, padding=1)
        self.mid = nn.ModuleList(ResBlock(widths[-1], widths[-1]) for _ in range(num_res_blocks))
        # Coarse to fine: each level takes the next coarser level's width.
        inputs = widths[1:] + widths[-1:]
        self.stages = nn.ModuleList(
            UpStage(inputs[i], widths[i], num_res_blocks, upsample=i > 0)
            for i in reversed(range(len(widths)))
        )
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    @property
    def last_layer(self) -> Tensor:
        """Weight of the output conv (the adaptive GAN weight balances gradients here)."""
        return self.conv_out.weight

    def forward(self, probs: Tensor) -> Tensor:
        """probs (b h w c), a distribution over codes per cell -> images (b 3 H W)."""
        codes = einsum(probs, self.codebook, "b h w c, c d -> b d h w")  # expected embedding
        return self.decode_codes(codes)

    def decode_ids(self, ids: Tensor) -> Tensor:
        """ids (b h w) int64 -> images (b 3 H W): the VQGAN's own decoding of hard codes."""
        codes = rearrange(F.embedding(ids, self.codebook), "b h w d -> b d h w")
        return self.decode_codes(codes)

    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes (b d h w) -> images (b 3 H W), in the ordinary (NCHW) layout."""
        # NHWC from the first conv on: every later layer inherits its input's layout.
        x = self.conv_in(codes.contiguous(memory_format=torch.channels_last))  # (b c h w)
        for block in self.mid:
            x = block(x)
        for stage in self.stages:
            x = stage(x)  # (b c' 2h 2w) until the finest level
        x = self.conv_out(group_norm_silu(self.norm_out, x, inplace=True))
        return x.contiguous()  # (b 3 H W)
