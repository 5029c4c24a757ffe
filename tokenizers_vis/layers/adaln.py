"""adaLN-Zero transformer blocks: timestep-conditioned attention and MLP over timm's layers.

Paper: Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT, 2023), Sec. 3.2: every
block regresses shift, scale and gate of both sub-layers from the conditioning vector; the
regression is zero-initialised, so each block starts as the identity.

What we changed: attention and MLP are timm's (`Attention`, `Mlp`) and attention takes a boolean
key mask, because the rectified-flow decoder hides a truncated token tail (tail drop) the way the
deterministic decoder does; the conditioning vector is the timestep embedding only (the token
prefix is part of the sequence, not of the modulation). FlexTok's decoder blocks are these with
options: SwiGLU, no biases, q/k norms without affine parameters, every epsilon 1e-5.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

from einops import rearrange
from timm.layers import Mlp
from timm.models.vision_transformer import Attention
from torch import Tensor, nn

from tokenizers_vis.layers.transformer import swiglu


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (b l w), shift and scale (b 1 w) -> (b l w)."""
    return x * (1 + scale) + shift


class AdaLNZeroBlock(nn.Module):
    """DiT block: pre-norm attention and MLP, each modulated and gated by a conditioning vector.

    Args:
        width: model dimension.
        num_heads: attention heads (width must divide evenly).
        mlp_ratio: hidden size of the MLP relative to width.
        qk_norm: normalise queries and keys.
        mlp: "gelu" (DiT's tanh-approximated GELU) or "swiglu" (`transformer.swiglu`, FlexTok).
        bias: biases in q/k/v, the attention output and the MLP; FlexTok's blocks have none.
        qk_norm_affine: learned scale and shift in the q/k norms; FlexTok's have none.
        norm_eps: epsilon of the block norms and the q/k norms; None keeps what our models were
            trained with (1e-6 in the blocks, 1e-5 in the q/k norms); FlexTok uses 1e-5 in all.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        mlp: Literal["gelu", "swiglu"] = "gelu",
        bias: bool = True,
        qk_norm_affine: bool = True,
        norm_eps: float | None = None,
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        if mlp not in ("gelu", "swiglu"):
            raise ValueError(f"mlp must be 'gelu' or 'swiglu', got {mlp!r}")
        eps = 1e-6 if norm_eps is None else norm_eps
        qk_eps = 1e-5 if norm_eps is None else norm_eps
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=eps)
        qk_layer = partial(nn.LayerNorm, eps=qk_eps, elementwise_affine=qk_norm_affine)
        self.attn = Attention(
            width,
            num_heads,
            qkv_bias=bias,
            qk_norm=qk_norm,
            proj_bias=bias,
            norm_layer=qk_layer,
        )
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=eps)
        if mlp == "swiglu":
            self.mlp = swiglu(width, int(width * mlp_ratio), bias=bias)
        else:
            gelu = partial(nn.GELU, approximate="tanh")  # DiT's MLP activation
            self.mlp = Mlp(width, int(width * mlp_ratio), act_layer=gelu, bias=bias)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def zero_init(self) -> None:
        """adaLN-Zero: shift, scale and gate start at 0, so the block is the identity."""
        nn.init.zeros_(self.modulation[-1].weight)
        nn.init.zeros_(self.modulation[-1].bias)

    def forward(self, x: Tensor, cond: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x (b l w), cond (b w), attn_mask broadcastable to (b heads l l), True = may attend."""
        shift1, scale1, gate1, shift2, scale2, gate2 = rearrange(
            self.modulation(cond), "b (six w) -> six b 1 w", six=6
        )  # each (b 1 w)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), attn_mask=attn_mask)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))  # (b l w)


class AdaLNFinal(nn.Module):
    """DiT's output layer: modulated LayerNorm, then a zero-initialised linear head.

    Args:
        width: model dimension.
        out_dim: values per output position (e.g. patch_size**2 * channels).
        norm_eps: epsilon of the modulated norm (FlexTok's head: 1e-5).
    """

    def __init__(self, width: int, out_dim: int, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=norm_eps)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_dim)

    def zero_init(self) -> None:
        """The network's first prediction is exactly 0 (DiT)."""
        for layer in (self.modulation[-1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x (b l w), cond (b w) -> (b l out_dim)."""
        shift, scale = rearrange(self.modulation(cond), "b (two w) -> two b 1 w", two=2)
        return self.linear(modulate(self.norm(x), shift, scale))
