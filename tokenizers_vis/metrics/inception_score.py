"""Inception Score from precomputed 1008-way logits of the TF-Inception graph.

Salimans et al. 2016, "Improved Techniques for Training GANs": IS = exp E_x KL(p(y|x) || p(y)),
averaged over splits. The field's numbers (ADM's evaluator, improved-gan's script, torch-fidelity's
``logits_unbiased``) use the graph's classifier *without* its bias, over all 1008 outputs, and cut
the samples into consecutive splits without shuffling (ADM: 5,000 per split, i.e. 10 splits of
50,000 samples). We take the splits as ``[i n // s, (i + 1) n // s)``, which is ADM's cut whenever
``n`` is a multiple of ``s``, and compute in float64.

Why not torchmetrics' ``InceptionScore``: it permutes the samples with the global RNG before
splitting and wants images, not logits; the field's definition has no shuffle.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["inception_score"]


def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation of the Inception Score over consecutive splits.

    Args:
        logits: (n, c) classifier logits of n samples (the TF graph's: c = 1008, no bias).
        splits: number of consecutive, unshuffled splits (needs n >= splits).

    Returns:
        (mean, std) over splits; std is the population std, as ADM and torch-fidelity report.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (n, classes), got {tuple(logits.shape)}")
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"Inception Score needs 1 <= splits <= n samples, got {splits} and {n}")
    log_p = torch.log_softmax(logits.double(), dim=1)  # (n c)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]  # (m c)
        # log of the split's marginal p(y) = mean_x p(y|x), computed stably in log space.
        log_marginal = torch.logsumexp(part, dim=0) - math.log(part.shape[0])  # (c)
        kl = (part.exp() * (part - log_marginal)).sum(dim=1)  # (m)
        scores.append(kl.mean().exp().item())
    mean = sum(scores) / splits
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / splits)
    return mean, std
