"""Finite Scalar Quantization.

Paper: Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", ICLR 2024
(arXiv:2309.15505).
FlexTok uses levels [8, 8, 8, 5, 5, 5] (64,000 codes).

Changes from the reference: all bounding, rounding and index arithmetic run in fp32 with autocast
off.
Popular implementations round in the autocast dtype, where bf16's 8-bit mantissa cannot hold
`level - 1 + offset` exactly for levels >= 8, so codes and ids silently disagree under bf16.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from tokenizers_vis.quantizers.base import Quantizer, QuantizerOutput, check_vocab_sizes, fp32
from tokenizers_vis.registry import QUANTIZERS


def round_ste(x: Tensor) -> Tensor:
    """Round with a straight-through gradient."""
    return x + (x.round() - x).detach()


@QUANTIZERS.register("fsq")
class FSQ(Quantizer):
    """Each of `len(levels)` channels is bounded and rounded to `levels[i]` values in [-1, 1].

    Args:
        levels: number of values per channel; the codebook is their product, `dim = len(levels)`.
        eps: keeps tanh bounds off the edges so odd and even levels share one formula.
    """

    def __init__(self, levels: list[int], eps: float = 1e-3) -> None:
        super().__init__()
        whole = all(isinstance(lv, numbers.Integral) and not isinstance(lv, bool) for lv in levels)
        if not levels or not whole or any(lv < 2 for lv in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels = [int(lv) for lv in levels]
        self.eps = eps
        self.dim = len(self.levels)
        self.vocab_sizes = (math.prod(self.levels),)
        check_vocab_sizes(self.vocab_sizes, f"FSQ levels {self.levels}")
        basis = torch.cumprod(torch.tensor([1, *self.levels[:-1]], dtype=torch.int64), dim=0)
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.float32), False)
        self.register_buffer("_basis", basis, persistent=False)

    def bound(self, z: Tensor) -> Tensor:
        """(b n d) -> (b n d) within +-(L-1)/2 per channel, shifted so rounding hits L values."""
        half_l = (self._levels - 1) * (1 + self.eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, latents: Tensor) -> QuantizerOutput:
        """latents (b n d) -> codes (b n d) in [-1, 1], ids (b n 1)."""
        if latents.shape[-1] != self.dim:
            raise ValueError(f"FSQ expects last dim {self.dim}, got {tuple(latents.shape)}")
        with fp32(latents.device.type):
            rounded = round_ste(self.bound(latents.float()))  # (b n d) integers, centred
            half_width = torch.div(self._levels, 2, rounding_mode="floor")
            codes = rounded / half_width  # (b n d) in [-1, 1]
            ids = self.codes_to_ids(codes.detach())  # (b n 1)
        return QuantizerOutput(codes=codes, ids=ids)

    def codes_to_ids(self, codes: Tensor) -> Tensor:
        """(b n d) codes on the grid -> (b n 1) ids; the inverse of `ids_to_codes`."""
        half_width = torch.div(self._levels, 2, rounding_mode="floor")
        digits = (codes.float() * half_width + half_width).round().long()  # (b n d) in [0, L)
        return (digits * self._basis).sum(dim=-1, keepdim=True)

    def ids_to_codes(self, ids: Tensor) -> Tensor:
        """(b n 1) -> (b n d)."""
        self.check_ids(ids)
        levels = self._levels.long()
        digits = torch.div(ids.long(), self._basis, rounding_mode="floor") % levels  # (b n d)
        half_width = torch.div(levels, 2, rounding_mode="floor")
        return (digits - half_width).float() / half_width
