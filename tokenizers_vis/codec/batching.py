"""Batching across images: consecutive jobs' tiles share encoder / decoder batches.

A job (one image or one token file) enters only when the current batch has room for its tiles,
so memory stays at about one batch whatever the number of images, and finished jobs come out in
input order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Job", "batched"]


@dataclass
class Job:
    """One image or file in flight: its tiles, and what the batches computed for them."""

    tag: Any
    tiles: np.ndarray  # (T S S 3) uint8 for encoding; (T n g) ids for decoding
    extra: Any
    done: int = 0
    results: list[Any] = field(default_factory=list)


def batched(
    jobs: Iterable[Job], run: Callable[[list[tuple[Job, slice]]], list[Any]], batch_size: int
) -> Iterator[Job]:
    """Feed consecutive jobs' tiles through `run` in batches; yield each finished job in order.

    A job is pulled from `jobs` only while the next batch has room, so at most one batch of
    tiles (plus the job being read) is in memory.
    """
    pending: deque[Job] = deque()
    queued = 0  # tiles of pending jobs not yet run

    def flush(final: bool) -> Iterator[Job]:
        nonlocal queued
        while queued >= batch_size or (final and queued):
            chunks, room = [], batch_size
            for job in pending:
                take = min(len(job.tiles) - job.done, room)
                if take:
                    chunks.append((job, slice(job.done, job.done + take)))
                    room -= take
                if not room:
                    break
            for (job, part), result in zip(chunks, run(chunks), strict=True):
                job.results.append(result)
                job.done = part.stop
            queued -= batch_size - room
            while pending and pending[0].done == len(pending[0].tiles):
                yield pending.popleft()

    for job in jobs:
        pending.append(job)
        queued += len(job.tiles)
        yield from flush(final=False)
    yield from flush(final=True)
