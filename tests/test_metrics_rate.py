"""Token bytes, and JPEG / WebP baselines measured as real files."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tokenizers_vis.metrics import rate


def _smooth(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(low, size=size, mode="bicubic").clamp(-1, 1)  # (n 3 s s)


def test_token_bytes_formula():
    assert rate.bits_per_token((4096,)) == 12
    assert rate.token_bytes(32, (4096,)) == 48  # TiTok-style: 32 tokens x 12 bits
    assert rate.token_bytes(256, (8, 8, 8, 5, 5, 5)) == pytest.approx(
        256 * (9 + 3 * math.log2(5)) / 8
    )
    assert rate.token_bytes(16, (256, 256)) == 32  # two sub-codebooks, 16 bits per position
    per_image = rate.token_bytes(torch.tensor([1, 4]), (16,))
    assert per_image.tolist() == [0.5, 2.0]


@pytest.mark.parametrize("codec,qualities", [("jpeg", (5, 50, 95)), ("webp", (0, 50, 100))])
def test_codec_bytes_grow_with_quality_and_decode(codec, qualities):
    images = _smooth(3, 32, seed=0)
    points = rate.codec_sweep(images, codec, qualities)
    sizes = [p.mean_bytes for p in points]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    errors = [(p.images - images).abs().mean().item() for p in points]
    assert errors[-1] < errors[0]  # more bytes, closer images
    for p in points:
        assert p.images.shape == images.shape and p.images.abs().max() <= 1
        assert p.bytes_per_image.dtype == torch.int64 and p.codec == codec


def test_roundtrip_bytes_are_file_sizes():
    import io

    from tokenizers_vis.data.transforms import to_pil

    images = _smooth(1, 24, seed=1)
    point = rate.codec_roundtrip(images, "webp", 30)
    buf = io.BytesIO()
    to_pil(images[0]).save(buf, format="WEBP", quality=30, method=6, lossless=False)
    assert point.bytes_per_image.tolist() == [len(buf.getvalue())]
    with pytest.raises(ValueError, match="unknown codec"):
        rate.codec_roundtrip(images, "png", 1)


def _point(quality: int, size: int) -> rate.CodecPoint:
    return rate.CodecPoint("jpeg", quality, torch.tensor([size]), torch.zeros(1, 3, 1, 1))


def test_choose_and_interpolate_at_a_budget():
    points = [_point(10, 300), _point(50, 450), _point(90, 600)]
    assert rate.nearest_quality(points, 420).quality == 50
    assert rate.nearest_quality(points, 590, policy="at_most").quality == 50
    assert rate.nearest_quality(points, 100, policy="at_most").quality == 10  # none fits
    assert rate.interpolate_at_bytes([600, 300, 450], [30.0, 20.0, 25.0], 375) == 22.5
    assert math.isnan(rate.interpolate_at_bytes([300, 600], [20.0, 30.0], 100))
