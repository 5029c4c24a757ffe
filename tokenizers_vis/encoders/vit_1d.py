"""TiTok-style 1D encoder: a ViT over image patches concatenated with K learnable latent tokens.

Paper: Yu et al., "An Image is Worth 32 Tokens for Reconstruction and Generation" (TiTok, 2024).
Also FlexTok (Bachmann et al., 2025) for `latent_attention="causal"`: each latent (register) sees
every patch and only the latents before it, so token i cannot carry what token i+1 will say and the
sequence is ordered coarse to fine by construction.

Changes: blocks are timm's (SDPA attention); the latent outputs are projected straight to the
quantizer's code dimension.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import repeat
from timm.layers import PatchEmbed
from torch import Tensor, nn

from tokenizers_vis.layers.transformer import Transformer, init_weights, learned_positions
from tokenizers_vis.registry import ENCODERS


@ENCODERS.register("vit_1d")
class ViT1DEncoder(nn.Module):
    """images (b 3 h w) -> latents (b n d), n = num_tokens, d = out_dim.

    Args:
        image_size: square input size; set by the tokenizer.
        num_tokens: number of latent tokens K; set by the tokenizer.
        out_dim: code dimension of the quantizer; set by the tokenizer.
        patch_size: ViT patch size.
        width, depth, num_heads, mlp_ratio, qk_norm: transformer shape.
        latent_attention: "full" (TiTok) or "causal" (FlexTok registers).
    """

    def __init__(
        self,
        image_size: int,
        num_tokens: int,
        out_dim: int,
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        latent_attention: Literal["full", "causal"] = "full",
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        if latent_attention not in ("full", "causal"):
            raise ValueError(
                f"latent_attention must be 'full' or 'causal', got {latent_attention!r}"
            )
        self.patch_embed = PatchEmbed(image_size, patch_size, 3, width)
        num_patches = self.patch_embed.num_patches
        self.patch_positions = learned_positions(num_patches, width)
        self.latent_tokens = learned_positions(num_tokens, width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm)
        self.to_codes = nn.Linear(width, out_dim)
        self.num_patches = num_patches
        mask = attention_mask(num_patches, num_tokens) if latent_attention == "causal" else None
        self.register_buffer("attn_mask", mask, persistent=False)
        self.apply(init_weights)

    def forward(self, images: Tensor) -> Tensor:
        """images (b 3 h w) in [-1, 1] -> latents (b n d)."""
        patches = self.patch_embed(images) + self.patch_positions  # (b p w)
        latents = repeat(self.latent_tokens, "1 n w -> b n w", b=images.shape[0])  # (b n w)
        x = self.transformer(torch.cat([patches, latents], dim=1), self.attn_mask)  # (b p+n w)
        return self.to_codes(x[:, self.num_patches :])  # (b n d)


def attention_mask(num_patches: int, num_tokens: int) -> Tensor:
    """(p+n p+n) bool, True = may attend: patches see patches; latent i: patches, latents <= i.

    (Patches never see latents, so latents cannot leak into one another through the patches.)
    """
    size = num_patches + num_tokens
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:, :num_patches] = True
    mask[num_patches:, num_patches:] = torch.ones(num_tokens, num_tokens).tril().bool()
    return mask
