"""Codebook usage: how many codes are used, and how evenly, per sub-codebook and token position.

For 1D coarse-to-fine tokenizers the per-position view matters: early tokens tend to use a few
codes (global layout), late ones the whole codebook, and a dead tail of positions shows up as
near-zero entropy there. Entropy is in bits; perplexity = 2**entropy is the effective number of
codes (at most the vocabulary size).

Counts are kept per (position, code) for every sub-codebook, i.e. ``max_tokens * vocab_size``
int64 numbers each (e.g. 256 positions x 64k codes = 128 MB); pass ``per_position=False`` to keep
only overall counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor


def entropy_bits(counts: Tensor) -> Tensor:
    """Entropy in bits of the distributions in the last axis; NaN where a row has no counts.

    Args:
        counts: (..., v) non-negative counts.

    Returns:
        (...) float64.
    """
    p = counts.double() / counts.sum(-1, keepdim=True)  # 0/0 -> NaN for empty rows
    return 0.0 - torch.xlogy(p, p).sum(-1) / math.log(2)  # 0.0 - : no "-0." for one-code rows


class CodebookUsage:
    """Streaming codebook statistics over batches of token ids.

    Args:
        vocab_sizes: one vocabulary size per sub-codebook (g of them).
        per_position: also count per token position.
    """

    def __init__(self, vocab_sizes: Sequence[int], per_position: bool = True) -> None:
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        self.per_position = per_position
        self.reset()

    def reset(self) -> None:
        """Forget everything seen."""
        # One (positions, vocab) count table per sub-codebook; positions grow as needed.
        self.counts: list[Tensor] = [torch.zeros(0, v, dtype=torch.long) for v in self.vocab_sizes]

    def update(self, ids: Tensor, lengths: Tensor | None = None) -> None:
        """Count a batch.

        Args:
            ids: (b, n, g) int64 token ids, ``ids[..., j] < vocab_sizes[j]``.
            lengths: (b,) number of valid leading tokens per image; None = all n.
        """
        if ids.ndim != 3 or ids.shape[-1] != len(self.vocab_sizes):
            raise ValueError(
                f"expected ids (b, n, {len(self.vocab_sizes)}), got {tuple(ids.shape)}"
            )
        b, n, _ = ids.shape
        positions = torch.arange(n, device=ids.device).expand(b, n)  # (b, n)
        valid = torch.ones_like(positions, dtype=torch.bool)
        if lengths is not None:
            valid = positions < lengths.to(ids.device)[:, None]  # (b, n)
        rows = n if self.per_position else 1
        positions = positions[valid] if self.per_position else torch.zeros_like(positions[valid])
        for j, vocab in enumerate(self.vocab_sizes):
            codes = ids[..., j][valid]  # (m,)
            if codes.numel() and (codes.min() < 0 or codes.max() >= vocab):
                raise ValueError(f"sub-codebook {j}: ids outside [0, {vocab})")
            flat = torch.bincount(positions * vocab + codes, minlength=rows * vocab)
            self._add(j, rearrange(flat, "(n v) -> n v", v=vocab))

    def _add(self, j: int, counts: Tensor) -> None:
        table = self.counts[j].to(counts.device)
        if table.shape[0] < counts.shape[0]:  # longer sequences than seen so far
            grow = counts.shape[0] - table.shape[0]
            table = torch.cat([table, table.new_zeros(grow, table.shape[1])])
        table[: counts.shape[0]] += counts
        self.counts[j] = table

    def compute(self) -> dict[str, Tensor | float]:
        """Statistics of everything seen so far (tensors on CPU).

        Returns:
            ``usage`` (g,): fraction of each sub-codebook used at least once;
            ``entropy`` (g,) bits and ``perplexity`` (g,) of the overall code distribution;
            ``usage_mean``, ``perplexity_mean``: floats, means over sub-codebooks;
            ``num_tokens``: int, token slots counted (per sub-codebook);
            with ``per_position``: ``usage_per_position``, ``entropy_per_position``,
            ``perplexity_per_position`` (n, g) and ``tokens_per_position`` (n,). A position
            never seen has usage 0 and NaN entropy / perplexity.
        """
        overall = [c.sum(0).cpu() for c in self.counts]  # g x (v,)
        usage = torch.stack([(c > 0).double().mean() for c in overall])  # (g,)
        entropy = torch.stack([entropy_bits(c) for c in overall])  # (g,)
        out: dict[str, Tensor | float] = {
            "usage": usage,
            "entropy": entropy,
            "perplexity": 2**entropy,
            "usage_mean": usage.mean().item(),
            "perplexity_mean": (2**entropy).mean().item(),
            "num_tokens": int(overall[0].sum()) if overall else 0,
        }
        if self.per_position:
            tables = [c.cpu() for c in self.counts]  # g x (n, v); every update grows all alike
            per_pos_entropy = torch.stack([entropy_bits(t) for t in tables], dim=-1)  # (n, g)
            out["usage_per_position"] = torch.stack(
                [(t > 0).double().sum(-1) / t.shape[-1] for t in tables], dim=-1
            )  # (n, g)
            out["entropy_per_position"] = per_pos_entropy
            out["perplexity_per_position"] = 2**per_pos_entropy
            out["tokens_per_position"] = tables[0].sum(-1)  # (n,)
        return out


def codebook_usage(
    ids: Tensor, vocab_sizes: Sequence[int], lengths: Tensor | None = None
) -> dict[str, Tensor | float]:
    """One-shot :class:`CodebookUsage` on a single batch of ids (b, n, g); see its ``compute``."""
    meter = CodebookUsage(vocab_sizes)
    meter.update(ids, lengths)
    return meter.compute()
