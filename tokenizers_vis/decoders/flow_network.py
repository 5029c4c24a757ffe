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

FlexTok's published decoders are this network with options (`presets.flextok_*`): fixed 2D sin-cos
patch positions, SwiGLU blocks without biases or norm affines, a timestep embedding over t in
[0, 1] scaled by 1000 with a 256 maximum period, and the nested-dropout mask token at this
network's width (`mask_token`).

An optional projector reads the patches' hidden states after `repa_layer` blocks (REPA, Yu et
al., 2025); the loss that uses it, and its teacher, belong to the training system.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from timm.layers import PatchEmbed
from torch import Tensor, nn

from tokenizers_vis.decoders.flow_matching import TIMESTEP_SCALE
from tokenizers_vis.layers.adaln import AdaLNFinal, AdaLNZeroBlock
from tokenizers_vis.layers.patches import patches_and_tokens_mask, unpatchify
from tokenizers_vis.layers.repa import RepaProjector
from tokenizers_vis.layers.transformer import (
    init_weights,
    learned_positions,
    sincos_2d_positions,
)


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
        positions: patch positions, "learned" or "sincos2d" (fixed, not in the state dict).
        mlp, bias, qk_norm_affine, norm_eps: block options of `layers.adaln.AdaLNZeroBlock`
            (norm_eps also sets the output head's norm; None keeps 1e-6 there).
        time_scale: the timestep embedding sees t * time_scale (t in [0, 1]); 1000 matches
            diffusers' timesteps, FlexTok's is 1000 / its `max_timestep`.
        time_max_period: longest period of the sinusoidal timestep features (10000, DiT and
            diffusers; FlexTok 256).
        mask_token: a learned token at this network's width replaces every token slot the
            key mask hides, after the token projection and positions, and the slots stay in
            attention: FlexTok's nested dropout (token drop `mask_token="decoder"`). False: a
            hidden slot is left out of attention (tail drop).
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
        positions: Literal["learned", "sincos2d"] = "learned",
        mlp: Literal["gelu", "swiglu"] = "gelu",
        bias: bool = True,
        qk_norm_affine: bool = True,
        norm_eps: float | None = None,
        time_scale: float = TIMESTEP_SCALE,
        time_max_period: float = 10000.0,
        mask_token: bool = False,
    ) -> None:
        super().__init__()
        if repa_layer is not None and not 1 <= repa_layer <= depth:
            raise ValueError(f"repa_layer must be in 1..{depth}, got {repa_layer}")
        if positions not in ("learned", "sincos2d"):
            raise ValueError(f"positions must be 'learned' or 'sincos2d', got {positions!r}")
        self.size, self.channels, self.patch_size = size, channels, patch_size
        self.grid = size // patch_size
        self.repa_layer, self.repa_dim = repa_layer, repa_dim
        self.time_scale, self.time_max_period = time_scale, time_max_period
        self.patch_embed = PatchEmbed(size, patch_size, channels, width)
        if positions == "learned":
            self.patch_positions = learned_positions(self.grid * self.grid, width)
        else:
            self.register_buffer("patch_positions", sincos_2d_positions(self.grid, width), False)
        self.token_in = nn.Linear(in_dim, width)
        self.token_positions = learned_positions(num_tokens, width)
        self.null_token = learned_positions(1, width)  # (1 1 w) the CFG null condition
        # (1 1 w) FlexTok's nested-dropout token, at this width
        self.mask_token = learned_positions(1, width) if mask_token else None
        from diffusers.models.embeddings import TimestepEmbedding

        self.time_embed = TimestepEmbedding(256, width)
        self.blocks = nn.ModuleList(
            AdaLNZeroBlock(
                width, num_heads, mlp_ratio, qk_norm, mlp, bias, qk_norm_affine, norm_eps
            )
            for _ in range(depth)
        )
        head_eps = 1e-6 if norm_eps is None else norm_eps
        self.final = AdaLNFinal(width, patch_size * patch_size * channels, head_eps)
        self.repa_projector = RepaProjector(width, repa_dim) if repa_layer else None
        # ViT init for the linears only: the modulated LayerNorms have no affine parameters.
        self.apply(lambda m: init_weights(m) if isinstance(m, nn.Linear) else None)
        conv = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(rearrange(conv, "o i ph pw -> o (i ph pw)"))  # DiT
        for block in (*self.blocks, self.final):
            block.zero_init()

    def time_features(self, t: Tensor) -> Tensor:
        """t (b,) in [0, 1] -> (b 256) sinusoidal features [cos, sin] of t * time_scale."""
        from diffusers.models.embeddings import get_timestep_embedding

        return get_timestep_embedding(
            t * self.time_scale,
            256,
            flip_sin_to_cos=True,
            downscale_freq_shift=0,
            max_period=self.time_max_period,
        )

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
        if self.mask_token is not None and key_mask is not None:
            hidden = rearrange(~key_mask, "b n -> b n 1")
            cond = torch.where(hidden, self.mask_token.to(cond.dtype), cond)  # (b n w)
            key_mask = None  # masked slots stay in attention
        if drop is not None:
            null = rearrange(drop, "b -> b 1 1")
            # torch.where also when no sample drops: the null token stays in the graph (DDP).
            cond = torch.where(null, self.null_token.to(cond.dtype), cond)  # (b n w)
            if key_mask is not None:
                key_mask = key_mask | rearrange(drop, "b -> b 1")  # null slots are all visible
        time = self.time_embed(self.time_features(t).to(patches.dtype))  # (b w)
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
