"""Keep a prefix of the token sequence: how every prefix learns to decode to a whole image.

- `nested_dropout` (FlexTok; Rippel et al., "Learning Ordered Representations with Nested Dropout",
  2014): the tail after k tokens is replaced with a learned mask token; the decoder always sees K.
- `tail_drop` (One-D-Piece, Miwa et al., 2025): the tail is truncated; the decoder never attends to
it.

k is sampled per sample during training, and given by the caller at inference (any k in 1..K, mixed
lengths in one batch).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from einops import rearrange
from torch import Tensor, nn

from tokenizers_vis.registry import TOKEN_DROPS

Sampling = Literal["uniform", "pow2", "uniform_pow2"]


@TOKEN_DROPS.register("nested_dropout")
class NestedDropout(nn.Module):
    """Replace tokens at positions >= k with a learned mask token.

    Args:
        max_tokens: K; set by the tokenizer.
        dim: code dimension; set by the tokenizer.
        sampling: training distribution of k: `uniform` over 1..K, `pow2` uniform over {1, 2, 4, ..,
        K}
            (FlexTok), or `uniform_pow2`, an even mix of the two (dense k, but short prefixes get
            the
            extra weight they need to become good).
        drop_prob: fraction of training samples that get a sampled k; the rest keep all K tokens.
        min_tokens: smallest k sampled in training.
    """

    def __init__(
        self,
        max_tokens: int,
        dim: int,
        sampling: Sampling = "uniform",
        drop_prob: float = 1.0,
        min_tokens: int = 1,
    ) -> None:
        super().__init__()
        if sampling not in ("uniform", "pow2", "uniform_pow2"):
            raise ValueError(f"sampling must be uniform, pow2 or uniform_pow2, got {sampling!r}")
        if not 1 <= min_tokens <= max_tokens:
            raise ValueError(f"min_tokens must be in 1..{max_tokens}, got {min_tokens}")
        self.max_tokens = max_tokens
        self.sampling = sampling
        self.drop_prob = drop_prob
        self.min_tokens = min_tokens
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))

    def sample_lengths(self, batch: int, device: torch.device) -> Tensor:
        """(b,) int64 prefix lengths for a training batch (global RNG: seeded by the trainer)."""
        low, high = self.min_tokens, self.max_tokens
        uniform = torch.randint(low, high + 1, (batch,), device=device)
        pow2 = torch.tensor(
            [2**i for i in range(high.bit_length()) if low <= 2**i <= high] or [high], device=device
        )
        pow2 = pow2[torch.randint(0, len(pow2), (batch,), device=device)].clamp(max=high)
        if self.sampling == "uniform":
            lengths = uniform
        elif self.sampling == "pow2":
            lengths = pow2
        else:
            lengths = torch.where(torch.rand(batch, device=device) < 0.5, uniform, pow2)
        keep_all = torch.rand(batch, device=device) >= self.drop_prob
        return torch.where(keep_all, torch.full_like(lengths, high), lengths)

    def visible(self, lengths: Tensor, num_tokens: int) -> Tensor:
        """(b,) lengths -> (b n) bool, True for positions inside the kept prefix."""
        positions = torch.arange(num_tokens, device=lengths.device)
        return positions < rearrange(lengths, "b -> b 1")

    def forward(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """codes (b n d), lengths (b,) -> tokens (b n d), key mask (b n) or None (attend to all)."""
        keep = rearrange(self.visible(lengths, codes.shape[1]), "b n -> b n 1")
        tokens = torch.where(keep, codes, self.mask_token.to(codes.dtype))  # (b n d)
        return tokens, None


@TOKEN_DROPS.register("tail_drop")
class TailDrop(NestedDropout):
    """One-D-Piece: the tail is cut out of the decoder's attention instead of masked.

    The mask token is kept so both variants share one parameter layout, but frozen: an unused
    trainable parameter makes DDP fail on unused-parameter detection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mask_token.requires_grad_(False)

    def forward(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        keep = self.visible(lengths, codes.shape[1])  # (b n)
        tokens = codes * rearrange(keep, "b n -> b n 1").to(codes.dtype)  # (b n d) zero tail
        return tokens, keep
