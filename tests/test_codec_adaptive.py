"""`--target-psnr` with the shipped model: a flat tile gets fewer tokens than a detailed one,
and both meet the target in the decoded file."""

from __future__ import annotations

import numpy as np
import skimage.data
from PIL import Image

from tokenizers_vis.codec import Codec, read_header


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_flat_tile_gets_fewer_tokens_and_both_meet_the_target(one_thread):
    codec = Codec.from_pretrained("emoji32", device="cpu")
    cat = Image.fromarray(skimage.data.chelsea()).resize((32, 32), Image.Resampling.LANCZOS)
    image = Image.new("RGB", (64, 32), (128, 128, 128))  # left tile: flat grey
    image.paste(cat, (32, 0))  # right tile: a photo of a cat
    target = 16.5  # emoji32 reaches ~17 dB on this grey and ~19 dB on this cat at k = 64
    data = codec.encode_image(image, target_psnr=target)
    header = read_header(data)[0]
    flat, detailed = header.lengths
    assert flat < detailed < 64
    decoded = np.asarray(codec.decode_bytes(data))
    source = np.asarray(image)
    assert _psnr(decoded[:, :32], source[:, :32]) >= target
    assert _psnr(decoded[:, 32:], source[:, 32:]) >= target
    assert len(data) < 24 + 2 * 96  # fewer bytes than k = 64 everywhere
