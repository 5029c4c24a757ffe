"""Keep a prefix of the token sequence: how every prefix learns to decode to a whole image.

- `nested_dropout` (FlexTok; Rippel et al., "Learning Ordered Representations with Nested Dropout",
  2014): the tail after k tokens is replaced with a learned mask token; the decoder always sees K.
- `tail_drop` (One-D-Piece, Miwa et al., 2025): the tail is truncated; the decoder never attends to
it.

k is sampled per sample during training, and given by the caller at inference (any k in 1..K, mixed
lengths in one batch).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from einops import rearrange
from torch import Tensor, nn

from tokenizers_vis.registry import TOKEN_DROPS

Sampling = Literal["uniform", "pow2", "uniform_pow2", "uniform_or_pow2"]
SAMPLINGS = get_args(Sampling)


@TOKEN_DROPS.register("nested_dropout")
class NestedDropout(nn.Module):
    """Replace tokens at positions >= k with a learned mask token.

    Args:
        max_tokens: K; set by the tokenizer.
        dim: code dimension; set by the tokenizer.
        sampling: training distribution of k, named as FlexTok names them:
            `uniform` over 1..K; `pow2` uniform over {1, 2, 4, .., K}; `uniform_pow2` a uniform
            k rounded up to the next power of two (P(2^j) grows with 2^j: long prefixes
            dominate); or `uniform_or_pow2`, ours, an even mix of `uniform` and `pow2` (dense k,
            but short prefixes get the extra weight they need to become good). Until the FlexTok
            conversion, `uniform_pow2` was the name of our mix; shipped configs now say
            `uniform_or_pow2` (sampling is training-only: no weight or output changed).
        drop_prob: fraction of training samples that get a sampled k; the rest keep all K tokens.
        min_tokens: smallest k sampled in training.
        mask_token: where the learned token that replaces the tail lives: "codes", here at the
            code dimension; or "decoder", at the decoder's width after its token projection and
            positions (FlexTok): the codes pass unchanged with the visible-prefix mask, which a
            decoder built with `mask_token=True` fills with its own token (any other decoder
            hides the tail from attention, as tail drop does).
    """

    def __init__(
        self,
        max_tokens: int,
        dim: int,
        sampling: Sampling = "uniform",
        drop_prob: float = 1.0,
        min_tokens: int = 1,
        mask_token: Literal["codes", "decoder"] = "codes",
    ) -> None:
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        if mask_token not in ("codes", "decoder"):
            raise ValueError(f"mask_token must be 'codes' or 'decoder', got {mask_token!r}")
        if not 1 <= min_tokens <= max_tokens:
            raise ValueError(f"min_tokens must be in 1..{max_tokens}, got {min_tokens}")
        self.max_tokens = max_tokens
        self.sampling = sampling
        self.drop_prob = drop_prob
        self.min_tokens = min_tokens
        self.mask_at = mask_token
        # (1 1 d); with mask_token="decoder" the decoder owns the token, at its width
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim)) if mask_token == "codes" else None

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
        elif self.sampling == "uniform_pow2":
            lengths = next_power_of_two(uniform).clamp(max=high)
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
        visible = self.visible(lengths, codes.shape[1])  # (b n)
        if self.mask_token is None:
            return codes, visible  # the decoder fills the tail with its own token
        keep = rearrange(visible, "b n -> b n 1")
        tokens = torch.where(keep, codes, self.mask_token.to(codes.dtype))  # (b n d)
        return tokens, None


def next_power_of_two(k: Tensor) -> Tensor:
    """(b,) int64 >= 1 -> the smallest power of two >= k, elementwise."""
    exponent = torch.ceil(torch.log2(k.double())).long()  # exact for the k of a token sequence
    return torch.ones_like(k) << exponent


@TOKEN_DROPS.register("tail_drop")
class TailDrop(NestedDropout):
    """One-D-Piece: the tail is cut out of the decoder's attention instead of masked.

    The mask token is kept so both variants share one parameter layout, but frozen: an unused
    trainable parameter makes DDP fail on unused-parameter detection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("mask_token", "codes") != "codes":
            raise ValueError("tail drop hides the tail: it has no mask_token option")
        super().__init__(*args, **kwargs)
        self.mask_token.requires_grad_(False)

    def forward(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        keep = self.visible(lengths, codes.shape[1])  # (b n)
        tokens = codes * rearrange(keep, "b n -> b n 1").to(codes.dtype)  # (b n d) zero tail
        return tokens, keep
