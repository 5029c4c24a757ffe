"""ADM's center crop (Dhariwal & Nichol 2021, guided-diffusion): how ImageNet-256 reference and
training images are made, and so how every ImageNet-256 number in this line of papers was fed.

1. While the short side is at least twice the target, halve both sides with a box filter
   (integer division: an odd side loses its last pixel's half). Pillow's ``reduce`` would do
   this in one call; ADM does it by hand in steps, and the steps give different pixels.
2. Bicubic-resize so the short side is exactly the target: each side ``round(side * scale)``
   with Python's ``round`` (ties to even).
3. Crop the centre square, offsets ``(side - target) // 2`` (the extra pixel of an odd margin is
   dropped at the bottom / right).

Ours is written from that description, on Pillow (``Image.BOX``, ``Image.BICUBIC``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["adm_center_crop"]


def adm_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """ADM's center crop of an image to ``size`` x ``size``.

    Args:
        image: any PIL image (converted to RGB).
        size: the target side, e.g. 256.

    Returns:
        (size, size, 3) uint8.
    """
    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize((image.width // 2, image.height // 2), resample=Image.BOX)
    scale = size / min(image.size)
    target = (round(image.width * scale), round(image.height * scale))
    image = image.resize(target, resample=Image.BICUBIC)  # Pillow returns a copy at equal size
    array = np.asarray(image)  # (h w 3)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return np.ascontiguousarray(array[top : top + size, left : left + size])
