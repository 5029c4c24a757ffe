"""Tiles cover any size and aspect exactly; the resize layout keeps one tile per image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tokenizers_vis.codec.layout import coded_size, grid, tile_extents, tiles_to_image, to_tiles


@pytest.mark.parametrize("size", [(1, 1), (16, 16), (17, 16), (20, 300), (640, 427), (5, 33)])
def test_tiles_reassemble_to_the_exact_pixels(size):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    canvas = coded_size(size, 16)
    assert canvas == size
    tiles = to_tiles(image, canvas, 16)  # (T 16 16 3)
    cols, rows = grid(canvas, 16)
    assert tiles.shape == (cols * rows, 16, 16, 3)
    assert (cols, rows) == (-(-size[0] // 16), -(-size[1] // 16))
    back = tiles_to_image(tiles, canvas, size)
    np.testing.assert_array_equal(np.asarray(back), pixels)


def test_padding_repeats_edges_and_extents_exclude_it():
    pixels = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)  # h 3, w 5
    tiles = to_tiles(Image.fromarray(pixels), (5, 3), 4)  # 2 x 1 tiles of 4 px
    np.testing.assert_array_equal(tiles[1, :3, 1:], np.repeat(pixels[:, 4:5], 3, axis=1))
    np.testing.assert_array_equal(tiles[0, 3], tiles[0, 2])  # bottom row repeated
    np.testing.assert_array_equal(tile_extents((5, 3), 4), [[3, 4], [3, 1]])


def test_resize_layout_and_scale():
    assert coded_size((640, 427), 32, "resize") == (32, 32)
    assert coded_size((640, 427), 32, "tile", scale=0.5) == (320, 214)
    assert coded_size((3, 1), 32, "tile", scale=0.1) == (1, 1)  # never below one pixel
    image = Image.new("RGB", (20, 300), (10, 200, 30))
    tiles = to_tiles(image, (32, 32), 32)
    assert tiles.shape == (1, 32, 32, 3)
    back = tiles_to_image(tiles, (32, 32), (20, 300))
    assert back.size == (20, 300)
    assert np.abs(np.asarray(back).astype(int) - (10, 200, 30)).max() <= 1
    with pytest.raises(ValueError, match="unknown layout"):
        coded_size((1, 1), 32, "mosaic")
    with pytest.raises(ValueError, match="scale"):
        coded_size((1, 1), 32, "tile", scale=1.5)
