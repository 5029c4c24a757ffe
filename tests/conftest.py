"""Shared fixtures: tests are CPU-only, offline, seeded and small."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def images16() -> torch.Tensor:
    """(4 3 16 16) smooth images in [-1, 1]: gradients plus a blob, learnable in a few steps."""
    g = torch.Generator().manual_seed(1)
    base = torch.linspace(-1, 1, 16)
    xx, yy = torch.meshgrid(base, base, indexing="xy")
    colours = torch.rand(4, 3, 1, 1, generator=g) * 2 - 1
    blob = torch.exp(-(xx**2 + yy**2) * 4)
    return (
        (0.5 * colours * (xx + yy) / 2 + 0.5 * blob - 0.2).clamp(-1, 1).expand(4, 3, 16, 16).clone()
    )


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: as fast for tiny models, and far faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
