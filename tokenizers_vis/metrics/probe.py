"""Linear probes: how much of a label (e.g. the 9 emoji groups) a sub-codebook's tokens carry.

A closed-form ridge regression onto one-hot labels (the least-squares classifier), its strength
chosen on a validation split, accuracy reported on a held-out one. Closed form because it is
deterministic, has no learning rate or epochs to tune, and takes milliseconds on CPU for a few
thousand images x a few hundred features. Features are the sub-codebook's code vectors of the
first k tokens, concatenated in order (position matters in coarse-to-fine 1D tokens), so every
sub-codebook of a factorized quantizer is probed on its own and the probe sees exactly what the
decoder gets from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor

DEFAULT_L2 = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


@torch.no_grad()
def token_features(
    tokenizer: torch.nn.Module, images: Tensor, num_tokens: int | None = None, batch_size: int = 64
) -> list[Tensor]:
    """Each sub-codebook's code vectors of the first k tokens, flattened per image.

    Args:
        tokenizer: a `Tokenizer`.
        images: (b 3 h w) in [-1, 1].
        num_tokens: k (default K).
        batch_size: images per encoder pass.

    Returns:
        G tensors (b, k * d_g) float32 on the CPU, one per sub-codebook.
    """
    quantizer = tokenizer.quantizer
    chunks: list[list[Tensor]] = []
    device = next(tokenizer.parameters()).device
    for start in range(0, images.shape[0], batch_size):
        ids = tokenizer.encode(images[start : start + batch_size].to(device), num_tokens).ids
        parts = (
            quantizer.ids_to_parts(ids)
            if hasattr(quantizer, "ids_to_parts")
            else [quantizer.ids_to_codes(ids)]
        )  # G x (b k d_g)
        chunks.append([rearrange(p.float().cpu(), "b k d -> b (k d)") for p in parts])
    return [torch.cat(column) for column in zip(*chunks, strict=True)]


def _standardise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return (x.double() - mean) / std


def ridge_fit(x: Tensor, y: Tensor, num_classes: int, l2: float) -> tuple[Tensor, Tensor]:
    """Ridge regression of one-hot `y` on `x`.

    Args:
        x: (n f) standardised features.
        y: (n,) int64 labels in [0, num_classes).
        num_classes: c.
        l2: ridge strength (on the standardised scale, per sample summed).

    Returns:
        weights (f c) and bias (c,), float64.
    """
    targets = torch.nn.functional.one_hot(y, num_classes).double()  # (n c)
    x_mean, t_mean = x.mean(0), targets.mean(0)
    xc, tc = x - x_mean, targets - t_mean
    gram = xc.t() @ xc + l2 * torch.eye(x.shape[1], dtype=torch.float64)  # (f f)
    weights = torch.linalg.solve(gram, xc.t() @ tc)  # (f c)
    return weights, t_mean - x_mean @ weights


def accuracy(x: Tensor, y: Tensor, weights: Tensor, bias: Tensor) -> float:
    """Fraction of rows of `x` (n f) whose arg-max score is their label `y` (n,)."""
    return ((x @ weights + bias).argmax(-1) == y).double().mean().item()


def ridge_probe(
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    num_classes: int,
    l2: Sequence[float] = DEFAULT_L2,
) -> dict[str, float]:
    """Fit on `train`, pick the ridge strength on `val`, report accuracy on `test`.

    Args:
        train, val, test: (features (n f), labels (n,) int64) each.
        num_classes: number of labels c.
        l2: ridge strengths tried.

    Returns:
        {"accuracy": test accuracy, "val_accuracy", "train_accuracy", "l2": the chosen strength,
        "chance": the test frequency of the most common training label}.
    """
    mean = train[0].double().mean(0)
    std = train[0].double().std(0).clamp_min(1e-6)  # constant features stay 0
    xs = [_standardise(x, mean, std) for x, _ in (train, val, test)]
    ys = [y.long() for _, y in (train, val, test)]
    best: tuple[float, float, Tensor, Tensor] | None = None
    for strength in l2:
        weights, bias = ridge_fit(xs[0], ys[0], num_classes, strength)
        score = accuracy(xs[1], ys[1], weights, bias)
        if best is None or score > best[0]:
            best = (score, strength, weights, bias)
    val_acc, strength, weights, bias = best
    majority = torch.bincount(ys[0], minlength=num_classes).argmax()
    return {
        "accuracy": accuracy(xs[2], ys[2], weights, bias),
        "val_accuracy": val_acc,
        "train_accuracy": accuracy(xs[0], ys[0], weights, bias),
        "l2": strength,
        "chance": (ys[2] == majority).double().mean().item(),
    }
