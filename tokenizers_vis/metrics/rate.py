"""Rate: bytes per image of a token sequence, and JPEG / WebP baselines at equal bytes.

Tokens are counted at their fixed-length cost, ``k * sum_g log2(vocab_size_g)`` bits: no entropy
coding (which could only shrink it) and no container (a stored variable-length file would also
need k, about one byte). The baselines are real files: Pillow encodes each image, the byte count
is the whole file (headers and tables included: a JPEG spends about 300 bytes on them, so at
32x32 no JPEG is smaller than that; WebP about 30), and the file is decoded back so the same
reconstruction metrics apply. Settings are the strongest Pillow offers within each format: JPEG
with optimised Huffman tables (default 4:2:0 chroma subsampling), lossy WebP with ``method=6``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from tokenizers_vis.data.transforms import to_pil, to_tensor

Codec = Literal["jpeg", "webp"]
DEFAULT_QUALITIES: dict[str, tuple[int, ...]] = {
    "jpeg": (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),  # Pillow: 1..95
    "webp": (0, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100),  # lossy: 0..100
}


def bits_per_token(vocab_sizes: Sequence[int]) -> float:
    """Bits of one token position: ``sum_g log2(vocab_size_g)`` over sub-codebooks."""
    return float(sum(math.log2(v) for v in vocab_sizes))


def token_bytes(num_tokens: int | Tensor, vocab_sizes: Sequence[int]) -> float | Tensor:
    """Bytes per image for ``num_tokens`` tokens: ``num_tokens * bits_per_token / 8``.

    Args:
        num_tokens: k, or (b,) per-image lengths (``Tokens.lengths``).
        vocab_sizes: one vocabulary size per sub-codebook.

    Returns:
        Fractional bytes, a float or a (b,) float tensor.
    """
    bits = bits_per_token(vocab_sizes)
    if isinstance(num_tokens, Tensor):
        return num_tokens.double() * bits / 8
    return num_tokens * bits / 8


@dataclass(frozen=True)
class CodecPoint:
    """One codec at one quality over a batch of images."""

    codec: str
    quality: int
    bytes_per_image: Tensor  # (b,) int64, whole file sizes
    images: Tensor  # (b, 3, h, w) float in [-1, 1], the decoded files

    @property
    def mean_bytes(self) -> float:
        return self.bytes_per_image.double().mean().item()


def _encode(image: Image.Image, codec: Codec, quality: int) -> bytes:
    buf = io.BytesIO()
    if codec == "jpeg":
        image.save(buf, format="JPEG", quality=quality, optimize=True)
    elif codec == "webp":
        image.save(buf, format="WEBP", quality=quality, method=6, lossless=False)
    else:
        raise ValueError(f"unknown codec {codec!r}; known: jpeg, webp")
    return buf.getvalue()


def codec_roundtrip(images: Tensor, codec: Codec, quality: int) -> CodecPoint:
    """Encode every image to a file in memory, measure it, decode it back.

    Args:
        images: (b, 3, h, w) float in [-1, 1] (quantised to uint8 first, as a file would be).
        codec: "jpeg" (quality 1..95) or "webp" (lossy, quality 0..100).
        quality: the encoder's quality setting.

    Returns:
        A :class:`CodecPoint` with per-image byte counts and decoded images on CPU.
    """
    sizes, decoded = [], []
    for image in images.detach().cpu():
        data = _encode(to_pil(image), codec, quality)
        sizes.append(len(data))
        decoded.append(to_tensor(Image.open(io.BytesIO(data)).convert("RGB")))  # (3, h, w)
    return CodecPoint(codec, quality, torch.tensor(sizes), torch.stack(decoded))


def codec_sweep(
    images: Tensor, codec: Codec, qualities: Sequence[int] | None = None, progress: bool = False
) -> list[CodecPoint]:
    """:func:`codec_roundtrip` at several qualities (default ``DEFAULT_QUALITIES[codec]``).

    Returns:
        One point per quality, in the order given.
    """
    qualities = DEFAULT_QUALITIES[codec] if qualities is None else qualities
    return [
        codec_roundtrip(images, codec, q)
        for q in tqdm(qualities, desc=f"{codec} sweep", disable=not progress)
    ]


def nearest_quality(
    points: Sequence[CodecPoint],
    target_bytes: float,
    policy: Literal["nearest", "at_most"] = "nearest",
) -> CodecPoint:
    """The point whose mean bytes per image is closest to a budget.

    Args:
        points: e.g. from :func:`codec_sweep`.
        target_bytes: the budget, e.g. ``token_bytes(k, vocab_sizes)``.
        policy: "nearest" in absolute bytes, or "at_most": the largest file within the budget
            (falls back to the smallest point when every file is over budget).
    """
    if not points:
        raise ValueError("no codec points")
    if policy == "at_most":
        within = [p for p in points if p.mean_bytes <= target_bytes]
        if within:
            return max(within, key=lambda p: p.mean_bytes)
        return min(points, key=lambda p: p.mean_bytes)
    return min(points, key=lambda p: abs(p.mean_bytes - target_bytes))


def interpolate_at_bytes(
    mean_bytes: Sequence[float], values: Sequence[float], target_bytes: float
) -> float:
    """A metric at a byte budget, linearly interpolated between measured points.

    Args:
        mean_bytes: bytes per image of each point (any order).
        values: the metric at each point (e.g. mean PSNR of its decoded images).
        target_bytes: the budget.

    Returns:
        The interpolated value; NaN outside the measured byte range (no extrapolation).
    """
    order = np.argsort(mean_bytes)
    xs, ys = np.asarray(mean_bytes, float)[order], np.asarray(values, float)[order]
    if len(xs) == 0 or not xs[0] <= target_bytes <= xs[-1]:
        return math.nan
    return float(np.interp(target_bytes, xs, ys))
