"""The quantizer contract shared by VQ, FSQ and factorized codebooks.

Every quantizer maps continuous latents `(b n d)` to codes of the same shape and to integer ids
`(b n g)`, one id per sub-codebook; `g` is 1 for VQ and FSQ. No flag changes the rank of `ids`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    """What a quantizer returns.

    Attributes:
        codes: (b n d) quantized latents with straight-through gradients to the inputs.
        ids: (b n g) int64 code indices, one per sub-codebook.
        losses: unweighted named loss terms ("quantizer/commit", ...); the training system weighs
        them.
        stats: detached scalars worth logging ("quantizer/dead_codes", ...).
    """

    codes: Tensor
    ids: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)


# The largest sub-codebook: ids are int64 in memory and at most 32 bits in a .vtok file, and no
# tokenizer of this kind comes near 2^32 codes (FlexTok's FSQ has 64,000).
MAX_CODEBOOK = 1 << 32


def check_vocab_sizes(vocab_sizes: tuple[int, ...], where: str) -> None:
    """Refuse a codebook outside 1..MAX_CODEBOOK (a spec from a file, e.g. FSQ levels [1e9]*4),
    when the quantizer is built rather than when its first file is written."""
    bad = [v for v in vocab_sizes if not 1 <= v <= MAX_CODEBOOK]
    if bad:
        raise ValueError(f"{where}: codebook sizes {bad} outside 1..2^32")


class Quantizer(nn.Module):
    """Base class: subclasses set `dim`, `vocab_sizes` and implement `forward`, `ids_to_codes`."""

    dim: int
    vocab_sizes: tuple[int, ...]

    def forward(self, latents: Tensor) -> QuantizerOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def ids_to_codes(self, ids: Tensor) -> Tensor:  # pragma: no cover - interface
        """(b n g) int64 -> (b n d) codes, exactly those `forward` returns for these ids."""
        raise NotImplementedError

    def check_ids(self, ids: Tensor) -> None:
        """Raise a clear error for ids that do not belong to this quantizer's codebooks."""
        if ids.dim() != 3 or ids.shape[-1] != len(self.vocab_sizes):
            raise ValueError(
                f"ids must have shape (b, n, {len(self.vocab_sizes)}), got {tuple(ids.shape)}"
            )
        if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"ids must be an integer tensor, got {ids.dtype}")
        limits = torch.tensor(self.vocab_sizes, device=ids.device)
        if ids.numel() and (bool((ids < 0).any()) or bool((ids >= limits).any())):
            raise ValueError(f"ids out of range for vocab sizes {self.vocab_sizes}")


def fp32(device_type: str) -> torch.autocast:
    """Autocast off: distances, rounding and index arithmetic are wrong in bf16/fp16."""
    return torch.autocast(device_type=device_type, enabled=False)
