"""A stack of timm ViT blocks with an optional boolean attention mask.

timm's `Block` already runs attention through PyTorch SDPA; we only add the mask plumbing that 1D
tokenizers need (causal registers, truncated tails) and a shared initialisation.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn


class Transformer(nn.Module):
    """`depth` pre-norm ViT blocks of width `width`, then a final LayerNorm.

    Args:
        width: model dimension.
        depth: number of blocks.
        num_heads: attention heads (width must divide evenly).
        mlp_ratio: hidden size of the MLP relative to width.
        qk_norm: normalise queries and keys (stabilises larger models in bf16).
        norm_eps: epsilon of every LayerNorm. None keeps what our own models were trained with
            (timm's 1e-6 in the blocks, torch's 1e-5 in the final norm); published models that
            use torch's LayerNorm throughout (TiTok, One-D-Piece) need 1e-5 everywhere to match.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        norm_eps: float | None = None,
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        # norm_eps None passes nothing, so timm's own LayerNorm (1e-6) stays exactly as trained.
        norm = {} if norm_eps is None else {"norm_layer": partial(nn.LayerNorm, eps=norm_eps)}
        self.blocks = nn.ModuleList(
            Block(
                width,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=True,
                qk_norm=qk_norm,
                **norm,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width, eps=1e-5 if norm_eps is None else norm_eps)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x (b l w), attn_mask broadcastable to (b heads l l), True = may attend -> (b l w)."""
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.norm(x)


def init_weights(module: nn.Module) -> None:
    """ViT initialisation: truncated-normal linears, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def learned_positions(length: int, width: int) -> nn.Parameter:
    """(1 length width) position (or query) embeddings, ViT-initialised."""
    return nn.Parameter(trunc_normal_(torch.empty(1, length, width), std=0.02))


def layer_norm(width: int, eps: float | None) -> nn.LayerNorm:
    """A LayerNorm with epsilon `eps`, torch's default (1e-5) when None."""
    return nn.LayerNorm(width) if eps is None else nn.LayerNorm(width, eps=eps)
