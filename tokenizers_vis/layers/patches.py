"""Patch-grid helpers shared by the decoders that read images off a sequence [patches, tokens].

Both decoders (the deterministic ViT one and the rectified-flow one) run one self-attention
sequence whose first p positions are the output patches and whose last n are the 1D tokens, of
which a truncated tail may be hidden (tail drop). These two functions are that layout's only
arithmetic, kept in one place so the decoders cannot drift apart.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def unpatchify(patches: Tensor, grid: int, patch_size: int) -> Tensor:
    """patches (b (gh gw) (ph pw c)) in row-major grid order -> images (b c (gh ph) (gw pw)).

    Args:
        patches: one vector of ph * pw * c values per patch of a square grid of side `grid`.
        grid: patches per side.
        patch_size: pixels (or latent cells) per patch side.
    """
    return rearrange(
        patches,
        "b (gh gw) (ph pw c) -> b c (gh ph) (gw pw)",
        gh=grid,
        ph=patch_size,
        pw=patch_size,
    )


def patches_and_tokens_mask(key_mask: Tensor | None, num_patches: int) -> Tensor | None:
    """The attention mask of a sequence [patches, tokens]: every patch visible, a token only where
    `key_mask` says so, the same keys for every query.

    Args:
        key_mask: (b n) bool, True = the token is visible; None = all visible.
        num_patches: p, the patch positions in front of the tokens.

    Returns:
        (b 1 1 p+n) bool broadcastable to (b heads queries keys), or None when `key_mask` is None.
    """
    if key_mask is None:
        return None
    b = key_mask.shape[0]
    keys = torch.cat([key_mask.new_ones(b, num_patches), key_mask], 1)  # (b p+n)
    return rearrange(keys, "b l -> b 1 1 l")
