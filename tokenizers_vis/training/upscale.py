"""Start a tokenizer for 2x larger images from a trained one: same patch grid, patches 2x wider.

A ViT tokenizer at image size s with patch p sees an (s/p) x (s/p) grid; one at 2s with patch 2p
sees the same grid. Every weight but two keeps its shape and carries over unchanged (transformer
blocks, patch positions, quantizer, token projections). The two pixel-facing layers are mapped so
that the new model starts out as the old one applied at half resolution:

- the patch embedding (w, 3, p, p) -> (w, 3, 2p, 2p): each weight repeated over a 2x2 block and
  divided by 4, so embedding a 2p patch equals embedding its 2x2 box average, a p patch;
- the pixel head (p p 3, w) -> (2p 2p 3, w): each output pixel repeated over a 2x2 block, so the
  decode is the old decode upsampled by pixel repetition.

A larger token budget K' > K copies the first K latent tokens and token positions (nested dropout
put the coarse content there) and leaves the rest at their fresh initialisation; they, and all
detail finer than the old resolution, have to be learned. The extra tokens also join the
encoder's self-attention, so the first K tokens start near the old ones, not equal (exact only
for K' = K); the decoder masks tokens past the prefix, so a prefix decodes as before. Different
widths, depths, quantizers or grids cannot carry over and are refused.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange, repeat

from tokenizers_vis.tokenizer import Tokenizer

__all__ = ["upscale_tokenizer"]

# Per-token tables: (1, K, w), the new model's first K rows come from the old one.
TOKEN_TABLES = ("encoder.latent_tokens", "decoder.token_positions")


def _check_specs(old: dict[str, Any], new: dict[str, Any]) -> None:
    if new["image_size"] != 2 * old["image_size"]:
        raise ValueError(f"image_size must double: {old['image_size']} -> {new['image_size']}")
    if new["max_tokens"] < old["max_tokens"]:
        raise ValueError(f"max_tokens cannot shrink: {old['max_tokens']} -> {new['max_tokens']}")
    for part in ("encoder", "decoder"):
        a, b = dict(old[part]), dict(new[part])
        if b.pop("patch_size") != 2 * a.pop("patch_size"):
            raise ValueError(f"{part} patch_size must double (the patch grid stays the same)")
        if a != b:
            raise ValueError(f"{part} differs beyond its patch size: {a} vs {b}")
    if old["quantizer"] != new["quantizer"]:
        raise ValueError(f"quantizers differ: {old['quantizer']} vs {new['quantizer']}")


def _upscale_patch_embed(weight: torch.Tensor) -> torch.Tensor:
    """(w, c, p, p) -> (w, c, 2p, 2p), embedding a 2p patch as its 2x2 box average."""
    return repeat(weight, "w c h x -> w c (h 2) (x 2)") / 4


def _upscale_pixel_head(param: torch.Tensor, patch: int) -> torch.Tensor:
    """(p p 3 [, w]) -> (2p 2p 3 [, w]): every output pixel repeated over a 2x2 block."""
    grid = rearrange(param, "(h x c) ... -> h x c ...", h=patch, x=patch)
    return rearrange(repeat(grid, "h x c ... -> (h 2) (x 2) c ..."), "h x c ... -> (h x c) ...")


def upscale_tokenizer(old: Tokenizer, spec: dict[str, Any]) -> Tokenizer:
    """A tokenizer with `spec` (2x the image size and patch size of `old`, K' >= K) whose
    weights start from `old` as described in the module docstring.

    Raises:
        ValueError: the specs differ in anything but image size, patch size and max_tokens, or
            a weight the mapping does not know has another shape.
    """
    _check_specs(old.config, spec)
    new = Tokenizer(**spec)
    state, k = new.state_dict(), old.config["max_tokens"]
    patch = old.config["decoder"]["patch_size"]
    for name, value in old.state_dict().items():
        if name not in state:
            raise ValueError(f"{name} has no place in the new tokenizer")
        if name == "encoder.patch_embed.proj.weight":
            value = _upscale_patch_embed(value)
        elif name in ("decoder.to_pixels.weight", "decoder.to_pixels.bias"):
            value = _upscale_pixel_head(value, patch)
        elif name in TOKEN_TABLES:
            value = torch.cat([value, state[name][:, k:]], 1)  # (1 K' w): fresh rows after K
        if value.shape != state[name].shape:
            raise ValueError(
                f"{name}: {tuple(value.shape)} cannot map to {tuple(state[name].shape)}"
            )
        state[name] = value
    new.load_state_dict(state, strict=True)
    return new
