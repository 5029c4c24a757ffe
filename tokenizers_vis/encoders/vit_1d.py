"""TiTok-style 1D encoder: a ViT over image patches concatenated with K learnable latent tokens.

Paper: Yu et al., "An Image is Worth 32 Tokens for Reconstruction and Generation" (TiTok, 2024).
Also FlexTok (Bachmann et al., 2025) for `latent_attention="causal"`: each latent (register) sees
every patch and only the latents before it, so token i cannot carry what token i+1 will say and the
sequence is ordered coarse to fine by construction.

Changes: blocks are timm's (SDPA attention); the latent outputs are projected straight to the
quantizer's code dimension. FlexTok's published encoders are this module with options: a frozen VAE
in front (`vae`, patches over its 16-channel latents), fixed 2D sin-cos patch positions, SwiGLU
blocks without biases or LayerNorm affines (see `presets.flextok_*`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from einops import repeat
from timm.layers import PatchEmbed
from torch import Tensor, nn

from tokenizers_vis.layers.transformer import (
    Transformer,
    init_weights,
    learned_positions,
    sincos_2d_positions,
)
from tokenizers_vis.layers.vae import VAEEncoder
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
        positions: patch positions, "learned" or "sincos2d" (fixed, not in the state dict:
            FlexTok's, which lets the grid be read at any size).
        vae: `VAEEncoder` keyword arguments: patches are cut from the latents of this frozen
            VAE encoder instead of from pixels (FlexTok). Its weights are part of the state dict.
        mlp, bias, norm_affine, norm_eps: block options of `layers.transformer.Transformer`.
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
        positions: Literal["learned", "sincos2d"] = "learned",
        vae: dict[str, Any] | None = None,
        mlp: Literal["gelu", "swiglu"] = "gelu",
        bias: bool = True,
        norm_affine: bool = True,
        norm_eps: float | None = None,
    ) -> None:
        super().__init__()
        if latent_attention not in ("full", "causal"):
            raise ValueError(
                f"latent_attention must be 'full' or 'causal', got {latent_attention!r}"
            )
        if positions not in ("learned", "sincos2d"):
            raise ValueError(f"positions must be 'learned' or 'sincos2d', got {positions!r}")
        self.vae = VAEEncoder(**vae).requires_grad_(False) if vae is not None else None
        channels, size = 3, image_size
        if self.vae is not None:
            if image_size % self.vae.factor:
                raise ValueError(f"image_size {image_size} is not a multiple of {self.vae.factor}")
            channels, size = self.vae.latent_channels, image_size // self.vae.factor
        if size % patch_size:
            space = "latent" if vae is not None else "image"
            raise ValueError(f"{space} size {size} is not a multiple of patch_size {patch_size}")
        self.patch_embed = PatchEmbed(size, patch_size, channels, width)
        num_patches = self.patch_embed.num_patches
        if positions == "learned":
            self.patch_positions = learned_positions(num_patches, width)
        else:
            grid = size // patch_size
            self.register_buffer("patch_positions", sincos_2d_positions(grid, width), False)
        self.latent_tokens = learned_positions(num_tokens, width)
        self.transformer = Transformer(
            width,
            depth,
            num_heads,
            mlp_ratio,
            qk_norm,
            norm_eps=norm_eps,
            mlp=mlp,
            bias=bias,
            norm_affine=norm_affine,
        )
        self.to_codes = nn.Linear(width, out_dim)
        self.num_patches = num_patches
        mask = attention_mask(num_patches, num_tokens) if latent_attention == "causal" else None
        self.register_buffer("attn_mask", mask, persistent=False)
        for name, child in self.named_children():
            if name != "vae":  # the VAE keeps diffusers' own initialisation
                child.apply(init_weights)

    def train(self, mode: bool = True) -> ViT1DEncoder:
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()  # frozen: always in inference mode
        return self

    def forward(self, images: Tensor) -> Tensor:
        """images (b 3 h w) in [-1, 1] -> latents (b n d)."""
        if self.vae is not None:
            with torch.no_grad():
                images = self.vae(images)  # (b c h/f w/f) the frozen VAE's scaled latents
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
