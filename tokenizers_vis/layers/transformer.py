"""A stack of timm ViT blocks with an optional boolean attention mask.

timm's `Block` already runs attention through PyTorch SDPA; we only add the mask plumbing that 1D
tokenizers need (causal registers, truncated tails) and a shared initialisation.
"""

from __future__ import annotations

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
    """

    def __init__(
        self, width: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.blocks = nn.ModuleList(
            Block(width, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, qk_norm=qk_norm)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

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
