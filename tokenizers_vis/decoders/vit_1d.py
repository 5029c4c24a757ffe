"""Deterministic 1D-token ViT decoder.

Paper: Yu et al., TiTok (2024): the decoder concatenates a grid of mask tokens (one per output
patch)
with the latent tokens, runs a ViT and reads pixels off the patch positions.

Changes: pixels come straight from a linear head per patch (TiTok's stage-2 decodes to VQGAN codes
instead); tokens cut by tail drop are hidden with a key mask, so mixed lengths share one batch.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import repeat
from torch import Tensor, nn

from tokenizers_vis.decoders.base import Decoder, DecoderOutput
from tokenizers_vis.layers.patches import patches_and_tokens_mask, unpatchify
from tokenizers_vis.layers.transformer import Transformer, init_weights, learned_positions
from tokenizers_vis.registry import DECODERS


@DECODERS.register("vit_1d")
class ViT1DDecoder(Decoder):
    """tokens (b n d) -> images (b 3 h w).

    Args:
        image_size: output size; set by the tokenizer.
        num_tokens: K; set by the tokenizer.
        in_dim: code dimension; set by the tokenizer.
        patch_size: output patch size.
        width, depth, num_heads, mlp_ratio, qk_norm: transformer shape.
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
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        self.grid = image_size // patch_size
        self.patch_size = patch_size
        self.token_in = nn.Linear(in_dim, width)
        self.token_positions = learned_positions(num_tokens, width)
        self.patch_queries = learned_positions(self.grid * self.grid, width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio, qk_norm)
        self.to_pixels = nn.Linear(width, patch_size * patch_size * 3)
        self.apply(init_weights)

    @property
    def last_layer(self) -> Tensor:
        """Weight of the pixel head; the adaptive GAN weight balances gradients here (VQGAN)."""
        return self.to_pixels.weight

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
        p = queries.shape[1]
        attn_mask = patches_and_tokens_mask(key_mask, p)  # (b 1 1 p+n) | None
        x = self.transformer(torch.cat([queries, latents], dim=1), attn_mask)  # (b p+n w)
        return unpatchify(self.to_pixels(x[:, :p]), self.grid, self.patch_size)  # (b 3 h w)
