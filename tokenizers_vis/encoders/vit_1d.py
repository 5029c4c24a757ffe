"""TiTok-style 1D encoder: a ViT over image patches concatenated with K learnable latent tokens.

Paper: Yu et al., "An Image is Worth 32 Tokens for Reconstruction and Generation" (TiTok, 2024).
Also FlexTok (Bachmann et al., 2025) for `latent_attention="causal"`: each latent (register) sees
every patch and only the latents before it, so token i cannot carry what token i+1 will say and the
sequence is ordered coarse to fine by construction.

Changes: blocks are timm's (SDPA attention); the latent outputs are projected straight to the
quantizer's code dimension. The published TiTok / One-D-Piece checkpoints need four options that
default off: a class token, a LayerNorm before the first block (`ln_pre`), torch's LayerNorm
epsilon (`norm_eps=1e-5`) and their code head's memory-order read (`code_head="raw_reshape"`).
FlexTok's published encoders are this module with options: a frozen VAE
in front (`vae`, patches over its 16-channel latents), fixed 2D sin-cos patch positions, SwiGLU
blocks without biases or LayerNorm affines (see `presets.flextok_*`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from einops import rearrange, repeat
from timm.layers import PatchEmbed
from torch import Tensor, nn

from tokenizers_vis.layers.transformer import (
    Transformer,
    init_weights,
    layer_norm,
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
        class_token: prepend one learned token (its position folded in) that every token sees;
            the published TiTok / One-D-Piece encoders carry one, so their weights need it.
        ln_pre: LayerNorm over the whole input sequence before the first block (published TiTok).
        norm_eps: epsilon of every LayerNorm (None: our models' defaults; see `Transformer`).
        code_head: how the code projection reads the normed latents (b n w). "per_token": each
            token's own vector (our models). "raw_reshape": the (n w) values are read back in
            memory order as a (w n) matrix and each of its n columns is projected, so a code mixes
            values from several tokens. The published TiTok-L-32 / B-64 / S-128 and One-D-Piece
            encoders were trained with exactly this read, so it is reproduced, not fixed.
        positions: patch positions, "learned" or "sincos2d" (fixed, not in the state dict:
            FlexTok's, which lets the grid be read at any size).
        vae: `VAEEncoder` keyword arguments: patches are cut from the latents of this frozen
            VAE encoder instead of from pixels (FlexTok). Its weights are part of the state dict.
        mlp, bias, norm_affine: block options of `layers.transformer.Transformer`.
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
        class_token: bool = False,
        ln_pre: bool = False,
        norm_eps: float | None = None,
        code_head: Literal["per_token", "raw_reshape"] = "per_token",
        positions: Literal["learned", "sincos2d"] = "learned",
        vae: dict[str, Any] | None = None,
        mlp: Literal["gelu", "swiglu"] = "gelu",
        bias: bool = True,
        norm_affine: bool = True,
    ) -> None:
        super().__init__()
        _check_choices(latent_attention, code_head, positions)
        num_patches = self._build_front_end(
            image_size, num_tokens, patch_size, width, class_token, ln_pre, norm_eps, positions, vae
        )
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
        self.code_head = code_head
        # The class token counts as one more patch: it sees and is seen like the patches.
        self.num_patches = num_patches + int(class_token)
        mask = None
        if latent_attention == "causal":
            mask = attention_mask(self.num_patches, num_tokens)
        self.register_buffer("attn_mask", mask, persistent=False)
        for name, child in self.named_children():
            if name != "vae":  # the VAE keeps diffusers' own initialisation
                child.apply(init_weights)

    def _build_front_end(
        self,
        image_size: int,
        num_tokens: int,
        patch_size: int,
        width: int,
        class_token: bool,
        ln_pre: bool,
        norm_eps: float | None,
        positions: str,
        vae: dict[str, Any] | None,
    ) -> int:
        """Registers what comes before the first block and returns the number of patches.

        In this order, which the seeded initialisation draws in: `vae`, `patch_embed`,
        `patch_positions`, `latent_tokens`, `class_token`, `ln_pre` (the state-dict names).
        """
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
        self.class_token = learned_positions(1, width) if class_token else None
        self.ln_pre = layer_norm(width, norm_eps) if ln_pre else None
        return num_patches

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
        b = images.shape[0]
        latents = repeat(self.latent_tokens, "1 n w -> b n w", b=b)  # (b n w)
        parts = [patches, latents]
        if self.class_token is not None:
            parts.insert(0, repeat(self.class_token, "1 1 w -> b 1 w", b=b))
        x = torch.cat(parts, dim=1)  # (b p+n w), p counting the class token
        if self.ln_pre is not None:
            x = self.ln_pre(x)
        # Only the latents are read: the last block computes no patch rows.
        latents = self.transformer(x, self.attn_mask, rows=slice(self.num_patches, None))  # (b n w)
        if self.code_head == "raw_reshape":
            latents = raw_reshape(latents)
        return self.to_codes(latents)  # (b n d)


def _check_choices(latent_attention: str, code_head: str, positions: str) -> None:
    """ValueError naming the option for a choice `ViT1DEncoder` does not know."""
    for option, value, known in (
        ("latent_attention", latent_attention, ("full", "causal")),
        ("code_head", code_head, ("per_token", "raw_reshape")),
        ("positions", positions, ("learned", "sincos2d")),
    ):
        if value not in known:
            raise ValueError(f"{option} must be {' or '.join(map(repr, known))}, got {value!r}")


def raw_reshape(latents: Tensor) -> Tensor:
    """(b n w) -> (b n w): the values in memory order re-read as a (w n) matrix, transposed.

    Column i of that matrix holds values n*j + i of the flattened tokens, i.e. parts of several
    tokens: the published TiTok / One-D-Piece code heads see exactly this (`code_head`).
    """
    n = latents.shape[1]
    flat = rearrange(latents, "b n w -> b (n w)")  # memory order of the (b n w) tensor
    return rearrange(flat, "b (w n) -> b n w", n=n)  # (b n w), mixed across tokens


def attention_mask(num_patches: int, num_tokens: int) -> Tensor:
    """(p+n p+n) bool, True = may attend: patches see patches; latent i: patches, latents <= i.

    (Patches never see latents, so latents cannot leak into one another through the patches.)
    """
    size = num_patches + num_tokens
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:, :num_patches] = True
    mask[num_patches:, num_patches:] = torch.ones(num_tokens, num_tokens).tril().bool()
    return mask
