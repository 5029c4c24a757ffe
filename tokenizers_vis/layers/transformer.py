"""A stack of timm ViT blocks with an optional boolean attention mask.

timm's `Block` already runs attention through PyTorch SDPA; we only add the mask plumbing that 1D
tokenizers need (causal registers, truncated tails), a shared initialisation, and `rows`: 1D
tokenizers read only part of the sequence (the encoder its latents, the decoder its patches), so the
last block computes queries, attention output and MLP for those rows alone (keys and values still
come from every row). For TiTok-B-64's encoder that skips 257 of 321 rows in the last block.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from timm.layers import Attention, Mlp, SwiGLU, trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from tokenizers_vis.cpu_gemm import linear_gelu, linear_slice


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
        mlp: "gelu" (ViT) or "swiglu": a SiLU-gated MLP whose hidden size is 2/3 of
            width * mlp_ratio, so it costs what the GELU MLP costs (FlexTok's blocks).
        bias: biases in q/k/v, the attention output and the MLP; FlexTok's blocks have none.
        norm_affine: learned scale and shift in every LayerNorm (blocks, q/k norms, final norm);
            FlexTok normalises without them.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        norm_eps: float | None = None,
        mlp: Literal["gelu", "swiglu"] = "gelu",
        bias: bool = True,
        norm_affine: bool = True,
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        if mlp not in ("gelu", "swiglu"):
            raise ValueError(f"mlp must be 'gelu' or 'swiglu', got {mlp!r}")
        # Defaults pass nothing, so timm's own LayerNorm (1e-6) stays exactly as trained.
        options: dict[str, Any] = {}
        if norm_eps is not None or not norm_affine:
            eps = 1e-6 if norm_eps is None else norm_eps
            options["norm_layer"] = partial(nn.LayerNorm, eps=eps, elementwise_affine=norm_affine)
        options["mlp_layer"] = swiglu if mlp == "swiglu" else GeluMlp
        self.blocks = nn.ModuleList(
            Block(
                width,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=bias,
                proj_bias=bias,
                qk_norm=qk_norm,
                **options,
            )
            for _ in range(depth)
        )
        eps = 1e-5 if norm_eps is None else norm_eps
        self.norm = nn.LayerNorm(width, eps=eps, elementwise_affine=norm_affine)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None = None, rows: slice | None = None
    ) -> Tensor:
        """x (b l w), attn_mask broadcastable to (b heads l l), True = may attend -> (b l w), or
        (b r w) with `rows`: only those output rows, the last block computing no others."""
        if rows is None or not self.blocks:
            for block in self.blocks:
                x = block(x, attn_mask=attn_mask)
            return self.norm(x if rows is None else x[:, rows])
        for block in self.blocks[:-1]:
            x = block(x, attn_mask=attn_mask)
        return self.norm(block_rows(self.blocks[-1], x, attn_mask, rows))  # (b r w)


def block_rows(block: Block, x: Tensor, attn_mask: Tensor | None, rows: slice) -> Tensor:
    """`block(x, attn_mask)[:, rows]` without computing the other rows: x (b l w) -> (b r w).

    Keys and values come from every row; queries, the attention output projection and the MLP
    only from `rows` (a row's output depends on the others only through keys and values). Blocks
    whose attention this does not reproduce (a gated or unfused timm attention) run whole.
    """
    attn = block.attn
    if type(attn) is not Attention or attn.gate is not None or not attn.fused_attn:
        return block(x, attn_mask=attn_mask)[:, rows]
    dim = attn.attn_dim  # attn.qkv's outputs: q, k, v stacked, d each
    h = block.norm1(x)  # (b l w)
    q = linear_slice(h[:, rows], attn.qkv, 0, dim)  # (b r d)
    kv = linear_slice(h, attn.qkv, dim, 3 * dim)  # (b l 2d)
    q = rearrange(q, "b r (h e) -> b h r e", h=attn.num_heads)
    k, v = rearrange(kv, "b l (two h e) -> two b h l e", two=2, h=attn.num_heads)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if attn_mask is not None and attn_mask.shape[-2] != 1:  # per-query mask rows: keep ours
        attn_mask = attn_mask[..., rows, :]
    dropout = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
    out = rearrange(out, "b h r e -> b r (h e)")  # (b r d)
    out = attn.proj_drop(attn.proj(attn.norm(out)))  # (b r w)
    x = x[:, rows] + block.drop_path1(block.ls1(out))  # (b r w)
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


class GeluMlp(Mlp):
    """timm's `Mlp` (what `Block` builds by default: same submodules, same state dict) whose
    first linear and GELU run as one oneDNN call in fp32 CPU inference (`cpu_gemm.linear_gelu`);
    elsewhere exactly timm's forward."""

    def forward(self, x: Tensor) -> Tensor:
        act = self.act
        fused = None
        if type(act) is nn.GELU and act.approximate == "none" and not torch.jit.is_tracing():
            fused = linear_gelu(x, self.fc1)
        if fused is None:
            return super().forward(x)
        return self.drop2(self.fc2(self.norm(self.drop1(fused))))


def swiglu(in_features: int, hidden_features: int, bias: bool = True, **_: Any) -> SwiGLU:
    """timm's SwiGLU as a `Block(mlp_layer=...)`: hidden size 2/3 of what the block asks for (the
    gate doubles the input projection), rounded down as FlexTok does; the block's GELU and
    dropout arguments do not apply."""
    return SwiGLU(in_features, int(2 * hidden_features / 3), bias=bias)


def init_weights(module: nn.Module) -> None:
    """ViT initialisation: truncated-normal linears, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def learned_positions(length: int, width: int) -> nn.Parameter:
    """(1 length width) position (or query) embeddings, ViT-initialised."""
    return nn.Parameter(trunc_normal_(torch.empty(1, length, width), std=0.02))


def layer_norm(width: int, eps: float | None) -> nn.LayerNorm:
    """A LayerNorm with epsilon `eps`, torch's default (1e-5) when None."""
    return nn.LayerNorm(width) if eps is None else nn.LayerNorm(width, eps=eps)


def sincos_2d_positions(grid: int, width: int, temperature: float = 10000.0) -> Tensor:
    """(1 grid*grid width) fixed positions of a row-major square grid (MoCo v3, FlexTok): the
    first half of the channels is sin/cos of the row, the second of the column, each over
    width/4 frequencies 1 / temperature^(i / (width/4))."""
    if width % 4:
        raise ValueError(f"2D sin-cos positions need a width divisible by 4, got {width}")
    quarter = width // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)  # (w/4)
    index = torch.arange(grid, dtype=torch.float32)
    rows = repeat(index, "r -> (r c)", c=grid)[:, None] * omega  # (p w/4)
    cols = repeat(index, "c -> (r c)", r=grid)[:, None] * omega  # (p w/4)
    table = torch.cat([rows.sin(), rows.cos(), cols.sin(), cols.cos()], dim=1)  # (p w)
    return rearrange(table, "p w -> 1 p w")
