"""One streaming pass over an image source: a batch in memory at a time, per-batch results
stored as they come (`feature_cache.BatchCache`), so an interrupted pass resumes where it stopped
and ends with the numbers an uninterrupted one gives. Unreadable images are counted and listed;
only a pass in which every image fails is an error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tokenizers_vis.evaluation.feature_cache import BatchCache
from tokenizers_vis.evaluation.inputs import EvaluationError

# compute(batch index, images (b 3 s s) uint8) -> name -> (b, ...) tensors
Compute = Callable[[int, Tensor], dict[str, Tensor]]

__all__ = ["PassResult", "stream_pass"]


class PassResult:
    """The concatenated per-image tensors of a pass, the files that failed, and cache use.

    Attributes:
        tensors: name -> (n, ...) over every image that decoded, in source order.
        failed: [(file, reason)] of images that could not be read.
        cached_batches: batches taken from the cache instead of computed.
    """

    def __init__(self, parts: dict[str, list[Tensor]], failed: list, cached: int) -> None:
        self.tensors = {name: torch.cat(values) for name, values in parts.items()}
        self.failed, self.cached_batches = failed, cached

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0] if self.tensors else 0


def stream_pass(
    source,
    batch_size: int,
    compute: Compute,
    cache: BatchCache,
    progress: bool = False,
    desc: str = "features",
) -> PassResult:
    """Run ``compute`` over every batch of ``source``, reusing batches the cache holds.

    Args:
        source: an `evaluation.sources` source (``len``, ``batches(batch_size, start)``).
        batch_size: images per batch (part of the cache key: batches are file ranges).
        compute: the per-batch work; returns per-image tensors.
        cache: where batches are stored as soon as computed.
        progress: a tqdm bar over batches.

    Raises:
        EvaluationError: no image of the source could be read.
    """
    total = -(-len(source) // batch_size)
    parts: dict[str, list[Tensor]] = {}
    failed: list = []
    bar = tqdm(total=total, desc=desc, disable=not progress, unit="batch")

    def add(tensors: dict[str, Tensor], bad: list) -> None:
        for name, value in tensors.items():
            parts.setdefault(name, []).append(value)
        failed.extend(tuple(item) for item in bad)
        bar.update()

    start = 0
    while start < total and (hit := cache.get(start)) is not None:  # resume after the last
        add(*hit)
        start += 1
    for index, images, bad in source.batches(batch_size, start):
        hit = cache.get(index)
        if hit is None:
            tensors = compute(index, images) if images.shape[0] else {}
            cache.put(index, tensors, [list(item) for item in bad])
            hit = (tensors, bad)
        add(*hit)
    bar.close()
    if not parts:
        listed = "; ".join(f"{name}: {why}" for name, why in failed[:3])
        raise EvaluationError(f"none of the {len(source)} images could be read ({listed} ...)")
    return PassResult(parts, failed, cache.hits)
