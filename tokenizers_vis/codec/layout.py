"""Images of any size and aspect ratio on a tokenizer with one square input size S.

Two layouts, one mechanism. The image is (optionally) resampled to a *coded canvas*, the canvas
is cut into a grid of S x S tiles (row-major), each tile is one token sequence, and decoding
puts the tiles back, crops the canvas and resamples it to the original size:

- `tile` (default): the canvas is the image itself (or the image scaled by `scale`, e.g. 0.5
  for a quarter of the tiles). Cost: ceil(w/S) * ceil(h/S) sequences; the last column and row
  are padded by repeating the edge pixels (cheaper to code than a constant colour, and cropped
  away on decode); tiles are coded independently, so seams can show at tile borders.
- `resize`: the canvas is one S x S tile: the whole image is stretched to S x S (both axes
  independently, so no tile area is spent on padding) and stretched back on decode. One
  sequence per image whatever its size: a thumbnail-quality code of fixed size.

Resampling uses Lanczos both ways. The header keeps the original size and the canvas size, so
a 640x427 photo and a 20x300 strip come back at exactly their own size.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from einops import rearrange
from PIL import Image

from tokenizers_vis.codec.errors import OptionsError

__all__ = [
    "LAYOUTS",
    "LayoutName",
    "TileCanvas",
    "coded_size",
    "grid",
    "tile_extents",
    "tiles_to_image",
    "to_tiles",
]

LayoutName = Literal["tile", "resize"]
LAYOUTS: tuple[str, ...] = ("tile", "resize")


def coded_size(
    size: tuple[int, int], tile_size: int, layout: LayoutName = "tile", scale: float = 1.0
) -> tuple[int, int]:
    """(width, height) of the canvas that gets tiled.

    Args:
        size: the image's (width, height).
        tile_size: S.
        layout: "tile" or "resize".
        scale: tile layout only: resample the image by this factor (0 < scale <= 1) first.
    """
    if layout not in LAYOUTS:
        raise OptionsError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if not 0 < scale <= 1:
        raise OptionsError(f"scale must be in (0, 1], got {scale}")
    if layout == "resize":
        if scale != 1:
            raise OptionsError("scale applies to the tile layout only")
        return tile_size, tile_size
    w, h = size
    return max(1, round(w * scale)), max(1, round(h * scale))


def grid(canvas: tuple[int, int], tile_size: int) -> tuple[int, int]:
    """(columns, rows) of S x S tiles covering a canvas of (width, height)."""
    return -(-canvas[0] // tile_size), -(-canvas[1] // tile_size)


def to_tiles(image: Image.Image, canvas: tuple[int, int], tile_size: int) -> np.ndarray:
    """Resample `image` (RGB) to `canvas` when it differs, pad, and cut into tiles.

    Returns:
        (T, S, S, 3) uint8, T = columns * rows, row-major.
    """
    if image.size != canvas:
        image = image.resize(canvas, Image.Resampling.LANCZOS)
    pixels = np.asarray(image.convert("RGB"))  # (h w 3)
    cols, rows = grid(canvas, tile_size)
    pad = ((0, rows * tile_size - canvas[1]), (0, cols * tile_size - canvas[0]), (0, 0))
    padded = np.pad(pixels, pad, mode="edge")  # (rows*S cols*S 3)
    return rearrange(padded, "(r s) (c t) ch -> (r c) s t ch", s=tile_size, t=tile_size)


def tile_extents(canvas: tuple[int, int], tile_size: int) -> np.ndarray:
    """(T, 2) int64: each tile's (height, width) inside the canvas, i.e. without padding."""
    cols, rows = grid(canvas, tile_size)
    heights = np.minimum(tile_size, canvas[1] - np.arange(rows) * tile_size)  # (rows)
    widths = np.minimum(tile_size, canvas[0] - np.arange(cols) * tile_size)  # (cols)
    return np.stack(np.broadcast_arrays(heights[:, None], widths[None, :]), -1).reshape(-1, 2)


class TileCanvas:
    """The coded canvas, filled as batches of decoded tiles arrive (in any order).

    Holds only the image being made (a PIL RGB image, cropped to the canvas): a decode keeps
    one batch of tiles besides it, whatever the number of tiles.

    Args:
        canvas: (width, height) of the coded canvas.
        tile_size: S.
    """

    def __init__(self, canvas: tuple[int, int], tile_size: int) -> None:
        self.canvas, self.tile_size = canvas, tile_size
        self.cols, self.rows = grid(canvas, tile_size)
        self.image = Image.new("RGB", canvas)

    def paste(self, start: int, tiles: np.ndarray) -> None:
        """Put tiles (b, S, S, 3) uint8, numbers start .. start + b - 1 (row-major), in place;
        what lies past the canvas's edge (padding) is dropped."""
        s, (width, height) = self.tile_size, self.canvas
        stop = start + len(tiles)
        if start < 0 or stop > self.cols * self.rows:
            raise ValueError(f"tiles {start}..{stop - 1} outside a {self.cols}x{self.rows} grid")
        for row in range(start // self.cols, -(-stop // self.cols)):
            first, last = max(start, row * self.cols), min(stop, (row + 1) * self.cols)
            col = first - row * self.cols
            strip = rearrange(tiles[first - start : last - start], "n s t ch -> s (n t) ch")
            strip = strip[: height - row * s, : width - col * s]  # (<=S <=n*S 3)
            self.image.paste(Image.fromarray(np.ascontiguousarray(strip)), (col * s, row * s))

    def finish(self, size: tuple[int, int]) -> Image.Image:
        """The image at `size` (resampled when the canvas differs)."""
        if size == self.canvas:
            return self.image
        return self.image.resize(size, Image.Resampling.LANCZOS)


def tiles_to_image(
    tiles: np.ndarray, canvas: tuple[int, int], size: tuple[int, int]
) -> Image.Image:
    """Inverse of `to_tiles`: (T, S, S, 3) uint8 -> RGB image of `size` (width, height)."""
    tile_size = tiles.shape[1]
    cols, rows = grid(canvas, tile_size)
    if tiles.shape[0] != cols * rows:
        raise ValueError(f"{tiles.shape[0]} tiles for a {cols}x{rows} grid")
    out = TileCanvas(canvas, tile_size)
    out.paste(0, tiles)
    return out.finish(size)
