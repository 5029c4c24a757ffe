"""The rectified-flow decoder's network: a DiT that predicts a velocity given a token prefix.

Papers: the blocks are DiT's adaLN-Zero (Peebles & Xie, "Scalable Diffusion Models with
Transformers", 2023), conditioned on the timestep only; the tokens join the noisy patches in one
self-attention sequence [patches, tokens] as in FlexTok (Bachmann et al., 2025); guidance is
classifier-free (Ho & Salimans, 2022) with one learned null token.

Why in context rather than cross-attention: K tokens are few next to the patches, so the cost is
small; every layer lets patches and tokens read each other with one set of weights; and a
truncated tail (tail drop) is hidden by the same key mask as in the deterministic ViT decoder, so
mixed prefix lengths share a batch. A nested-dropout tail arrives as the token drop's learned
mask token. The null condition of classifier-free guidance fills every token slot of a dropped
sample.

An optional projector reads the patches' hidden states after `repa_layer` blocks (REPA, Yu et
al., 2025); the loss that uses it, and its teacher, belong to the training system.
"""

from __future__ import annotations

import torch
from einops import rearrange
from timm.layers import PatchEmbed
from torch import Tensor, nn

from tokenizers_vis.decoders.flow_matching import TIMESTEP_SCALE
from tokenizers_vis.layers.adaln import AdaLNFinal, AdaLNZeroBlock
from tokenizers_vis.layers.patches import patches_and_tokens_mask, unpatchify
from tokenizers_vis.layers.repa import RepaProjector
from tokenizers_vis.layers.transformer import init_weights, learned_positions


class FlowTransformer(nn.Module):
    """(x_t (b c s s), t (b,), tokens (b n d)) -> velocity (b c s s).

    Args:
        size: side of the flow's data (pixels or latent cells).
        channels: channels of the flow's data.
        num_tokens: K.
        in_dim: token (code) dimension.
        patch_size: patch size on the data grid.
        width, depth, num_heads, mlp_ratio, qk_norm: transformer shape.
        repa_layer: project the patches' hidden states after this many blocks (1..depth) for
            representation alignment; None builds no projector.
        repa_dim: the projector's output size (the teacher's feature size).
    """

    def __init__(
        self,
        size: int,
        channels: int,
        num_tokens: int,
        in_dim: int,
        patch_size: int,
        width: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        repa_layer: int | None = None,
        repa_dim: int = 2048,
    ) -> None:
        super().__init__()
        if repa_layer is not None and not 1 <= repa_layer <= depth:
            raise ValueError(f"repa_layer must be in 1..{depth}, got {repa_layer}")
        self.size, self.channels, self.patch_size = size, channels, patch_size
        self.grid = size // patch_size
        self.repa_layer, self.repa_dim = repa_layer, repa_dim
        self.patch_embed = PatchEmbed(size, patch_size, channels, width)
        self.patch_positions = learned_positions(self.grid * self.grid, width)
        self.token_in = nn.Linear(in_dim, width)
        self.token_positions = learned_positions(num_tokens, width)
        self.null_token = learned_positions(1, width)  # (1 1 w) the CFG null condition
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, width)
        self.blocks = nn.ModuleList(
            AdaLNZeroBlock(width, num_heads, mlp_ratio, qk_norm) for _ in range(depth)
        )
        self.final = AdaLNFinal(width, patch_size * patch_size * channels)
        self.repa_projector = RepaProjector(width, repa_dim) if repa_layer else None
        # ViT init for the linears only: the modulated LayerNorms have no affine parameters.
        self.apply(lambda m: init_weights(m) if isinstance(m, nn.Linear) else None)
        conv = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(rearrange(conv, "o i ph pw -> o (i ph pw)"))  # DiT
        for block in (*self.blocks, self.final):
            block.zero_init()

    def velocity(
        self,
        x_t: Tensor,
        t: Tensor,
        tokens: Tensor,
        key_mask: Tensor | None = None,
        drop: Tensor | None = None,
    ) -> Tensor:
        """Predicted velocity (b c s s) at x_t (b c s s), t (b,) in [0, 1].

        Args:
            tokens: (b n d) the condition; key_mask (b n) True = visible, None = all.
            drop: (b,) bool, True where the null condition replaces the tokens.
        """
        return self.run(x_t, t, tokens, key_mask, drop)[0]

    def guided_velocity(
        self,
        x_t: Tensor,
        t: Tensor,
        tokens: Tensor,
        key_mask: Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> Tensor:
        """Classifier-free guidance: v_null + scale (v_cond - v_null), both in one batch.

        Scale 1 is the conditional prediction itself (one pass, no null condition).
        """
        if guidance_scale == 1.0:
            return self.velocity(x_t, t, tokens, key_mask)
        b = x_t.shape[0]
        drop = torch.arange(2 * b, device=x_t.device) >= b  # (2b,) second half: null condition

        def twice(x: Tensor | None) -> Tensor | None:
            return None if x is None else torch.cat([x, x])

        v = self.velocity(twice(x_t), twice(t), twice(tokens), twice(key_mask), drop)
        cond, null = rearrange(v, "(two b) c h w -> two b c h w", two=2)
        return null + guidance_scale * (cond - null)  # (b c s s)

    def run(
        self, x_t: Tensor, t: Tensor, tokens: Tensor, key_mask: Tensor | None, drop: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """-> velocity (b c s s), and the projected REPA features (b repa_dim gh gw) or None."""
        n = tokens.shape[1]
        patches = self.patch_embed(x_t) + self.patch_positions  # (b p w)
        cond = self.token_in(tokens) + self.token_positions[:, :n]  # (b n w)
        if drop is not None:
            null = rearrange(drop, "b -> b 1 1")
            # torch.where also when no sample drops: the null token stays in the graph (DDP).
            cond = torch.where(null, self.null_token.to(cond.dtype), cond)  # (b n w)
            if key_mask is not None:
                key_mask = key_mask | rearrange(drop, "b -> b 1")  # null slots are all visible
        time = self.time_embed(self.time_proj(t * TIMESTEP_SCALE).to(patches.dtype))  # (b w)
        p = patches.shape[1]
        attn_mask = patches_and_tokens_mask(key_mask, p)  # (b 1 1 p+n) | None
        x = torch.cat([patches, cond], dim=1)  # (b p+n w)
        features = None
        for depth, block in enumerate(self.blocks, start=1):
            x = block(x, time, attn_mask)
            if depth == self.repa_layer:
                projected = self.repa_projector(x[:, :p])  # (b p repa_dim)
                features = rearrange(projected, "b (gh gw) f -> b f gh gw", gh=self.grid)
        out = self.final(x[:, :p], time)  # (b p (ph pw c))
        return unpatchify(out, self.grid, self.patch_size), features
