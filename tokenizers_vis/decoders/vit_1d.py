"""Deterministic 1D-token ViT decoder.

Paper: Yu et al., TiTok (2024): the decoder concatenates a grid of mask tokens (one per output
patch)
with the latent tokens, runs a ViT and reads pixels off the patch positions.

Changes: pixels come straight from a linear head per patch; tokens cut by tail drop are hidden with
a key mask, so mixed lengths share one batch. Options (default off) rebuild the published decoders:
a class token, `ln_pre`, `norm_eps`, a 3x3 conv after the pixel head (TiTok VQ8k), and TiTok's
stage-2 head (`pixel_decoder`): per patch a distribution over a frozen VQGAN's codes, whose expected
embedding that VQGAN decodes (TiTok-L-32 / B-64 / S-128, One-D-Piece).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from tokenizers_vis.decoders.base import Decoder, DecoderOutput
from tokenizers_vis.layers.patches import patches_and_tokens_mask, unpatchify
from tokenizers_vis.layers.transformer import (
    Transformer,
    init_weights,
    layer_norm,
    learned_positions,
)
from tokenizers_vis.registry import DECODERS, PIXEL_DECODERS


@DECODERS.register("vit_1d")
class ViT1DDecoder(Decoder):
    """tokens (b n d) -> images (b 3 h w).

    Args:
        image_size: output size; set by the tokenizer.
        num_tokens: K; set by the tokenizer.
        in_dim: code dimension; set by the tokenizer.
        patch_size: output patch size.
        width, depth, num_heads, mlp_ratio, qk_norm: transformer shape.
        class_token: prepend one learned token (position folded in); published TiTok has one.
        ln_pre: LayerNorm over the whole input sequence before the first block (published TiTok).
        norm_eps: epsilon of every LayerNorm (None: our models' defaults; see `Transformer`).
        output_conv: a 3x3 conv over the assembled image after the per-patch pixel head; the
            published TiTok VQ8k decoders (BL-64, BL-128, SL-256) end with one.
        pixel_decoder: spec of a registered pixel decoder (`{"name": "maskgit_vqgan", ...}`).
            When set, each output patch predicts logits over its codebook (Linear, Tanh,
            Linear, hidden 2 x width, as published) and the softmax-weighted code embeddings are
            decoded by it; its upsampling factor must equal `patch_size`.
    """

    # One output per token prefix: callers (eval, codec) need no seed or step count.
    generative: ClassVar[bool] = False

    def __init__(
        self,
        image_size: int,
        num_tokens: int,
        in_dim: int,
        patch_size: int = 16,
        width: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        class_token: bool = False,
        ln_pre: bool = False,
        norm_eps: float | None = None,
        output_conv: bool = False,
        pixel_decoder: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        if output_conv and pixel_decoder is not None:
            raise ValueError("output_conv and pixel_decoder are two different heads; pick one")
        self.grid = image_size // patch_size
        self.patch_size = patch_size
        self.token_in = nn.Linear(in_dim, width)
        self.token_positions = learned_positions(num_tokens, width)
        self.patch_queries = learned_positions(self.grid * self.grid, width)
        self.class_token = learned_positions(1, width) if class_token else None
        self.ln_pre = layer_norm(width, norm_eps) if ln_pre else None
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm, norm_eps)
        self.pixel_decoder = None
        if pixel_decoder is None:
            self.to_pixels = nn.Linear(width, patch_size * patch_size * 3)
        else:
            self.pixel_decoder = PIXEL_DECODERS.build(pixel_decoder)
            factor = self.pixel_decoder.upsample_factor
            if factor != patch_size:
                raise ValueError(
                    f"pixel decoder upsamples {factor}x but patch_size is {patch_size}; they"
                    " must agree so the image comes out image_size wide"
                )
            self.to_logits = codebook_logits(width, self.pixel_decoder.codebook_size)
        self.output_conv = nn.Conv2d(3, 3, 3, padding=1) if output_conv else None
        self.apply(init_weights)

    @property
    def last_layer(self) -> Tensor:
        """Weight of the pixel head; the adaptive GAN weight balances gradients here (VQGAN)."""
        if self.pixel_decoder is not None:
            return self.pixel_decoder.last_layer
        return (self.output_conv or self.to_pixels).weight

    def forward(
        self, tokens: Tensor, key_mask: Tensor | None = None, images: Tensor | None = None
    ) -> DecoderOutput:
        """tokens (b n d), key_mask (b n) True = visible -> DecoderOutput(images (b 3 h w)), the
        reconstruction (`images` is unused: the decoder owns no loss)."""
        return DecoderOutput(images=self._decode(tokens, key_mask))

    def sample(
        self,
        tokens: Tensor,
        key_mask: Tensor | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        guidance_scale: float | None = None,
    ) -> Tensor:
        """Inference; deterministic, so the sampling arguments are accepted and unused."""
        return self._decode(tokens, key_mask)

    def _decode(self, tokens: Tensor, key_mask: Tensor | None) -> Tensor:
        b, n, _ = tokens.shape
        latents = self.token_in(tokens) + self.token_positions[:, :n]  # (b n w)
        queries = repeat(self.patch_queries, "1 p w -> b p w", b=b)  # (b p w)
        if self.class_token is not None:  # the class token leads, like a query nobody reads
            cls = repeat(self.class_token, "1 1 w -> b 1 w", b=b)
            queries = torch.cat([cls, queries], dim=1)  # (b 1+p w)
        first = queries.shape[1] - self.grid * self.grid  # 1 with a class token, else 0
        attn_mask = patches_and_tokens_mask(key_mask, queries.shape[1])  # (b 1 1 q+n) | None
        x = torch.cat([queries, latents], dim=1)  # (b q+n w)
        if self.ln_pre is not None:
            x = self.ln_pre(x)
        x = self.transformer(x, attn_mask, rows=slice(first, queries.shape[1]))  # (b p w)
        if self.pixel_decoder is not None:
            probs = self.to_logits(x).softmax(dim=-1)  # (b p c)
            grid = rearrange(probs, "b (gh gw) c -> b gh gw c", gh=self.grid)
            return self.pixel_decoder(grid)  # (b 3 h w)
        images = unpatchify(self.to_pixels(x), self.grid, self.patch_size)  # (b 3 h w)
        return images if self.output_conv is None else self.output_conv(images)


def codebook_logits(width: int, codebook_size: int) -> nn.Sequential:
    """Per-patch logits over a pixel decoder's codes: Linear, Tanh, Linear (hidden 2 x width)."""
    return nn.Sequential(
        nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, codebook_size)
    )
