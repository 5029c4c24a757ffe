"""Images the page works on: uploads read under limits, the bundled examples, and an LRU store.

An upload is held in memory only (never written to disk) and named by the SHA-256 of its bytes,
so the same picture uploaded twice is encoded once. Size limits apply before any pixel is
decoded: the request body is read up to `max_bytes`, and `load_rgb` reads the header's width and
height and refuses more than `max_pixels` (a 20,000 x 20,000 PNG is refused from its first
bytes; a large JPEG is decoded at 1/2, 1/4 or 1/8 scale instead, never at full size).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PIL import Image

from tokenizers_vis.data import load_rgb
from tokenizers_vis.errors import VistokError

__all__ = ["ImageEntry", "LRU", "example_images", "read_image"]

K = TypeVar("K")
V = TypeVar("V")
EXAMPLE_EMOJI = 8  # held-out (test split) emoji shown as examples
EXAMPLE_PHOTO_SIDE = 640  # bundled photos are downscaled to this longest side for the page


class PageError(VistokError):
    """A request the page cannot serve; `str(err)` is the line shown on the page."""


@dataclass(frozen=True)
class ImageEntry:
    """An RGB image the page knows, by the SHA-256 of its source bytes."""

    key: str
    name: str
    image: Image.Image

    def describe(self) -> dict[str, Any]:
        w, h = self.image.size
        return {"image": self.key, "name": self.name, "width": w, "height": h}


def read_image(data: bytes, name: str, max_pixels: int) -> ImageEntry:
    """Bytes of an image file -> ImageEntry, or PageError with the reason (never a traceback)."""
    if not data:
        raise PageError(f"{name}: empty file (zero bytes)")
    try:
        image = load_rgb(data, max_pixels=max_pixels)
    except ValueError as err:  # BadImageError: unreadable, truncated, too large, ...
        raise PageError(f"{name}: not an image this page can read: {err}") from None
    return ImageEntry(hashlib.sha256(data).hexdigest()[:32], name, image)


class LRU(Generic[K, V]):
    """A thread-safe least-recently-used map bounded by the summed `cost` of its values."""

    def __init__(self, budget: float, cost: Callable[[V], float] = lambda _v: 1.0) -> None:
        self.budget, self.cost = budget, cost
        self._items: OrderedDict[K, V] = OrderedDict()
        self._total = 0.0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        with self._lock:
            if key in self._items:
                self._total -= self.cost(self._items.pop(key))
            self._items[key] = value
            self._total += self.cost(value)
            while self._total > self.budget and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._total -= self.cost(old)
            return value

    def __len__(self) -> int:
        return len(self._items)


def _emoji_examples(size: int) -> list[tuple[str, str, Image.Image]]:
    from tokenizers_vis.data import EmojiDataset

    data = EmojiDataset("test", size=size)
    step = max(1, len(data) // EXAMPLE_EMOJI)
    out = []
    for i in range(0, min(len(data), step * EXAMPLE_EMOJI), step):
        pixels, _, info = data.record(i)
        out.append((f"emoji-{i}", f"emoji: {info['name']}", Image.fromarray(pixels)))
    return out


def _photo_examples() -> list[tuple[str, str, Image.Image]]:
    from tokenizers_vis.data.photos import PHOTO_SPLITS, photo_sources

    sources = photo_sources()
    out = []
    for name in PHOTO_SPLITS["test"]:
        if name not in sources:
            continue
        photo = load_rgb(sources[name])
        factor = min(1.0, EXAMPLE_PHOTO_SIDE / max(photo.size))
        if factor < 1:
            size = (round(photo.width * factor), round(photo.height * factor))
            photo = photo.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        out.append((f"photo-{name.replace('/', '-')}", f"photo: {name}", photo))
    return out


def example_images(size: int = 32) -> list[tuple[str, str, Image.Image]]:
    """(id, label, RGB image) of the held-out examples: test-split emoji at `size` px and the
    test-split photos (at most `EXAMPLE_PHOTO_SIDE` px on their longest side). A missing data
    package leaves its examples out rather than failing the page."""
    out: list[tuple[str, str, Image.Image]] = []
    for source in (lambda: _emoji_examples(size), _photo_examples):
        try:
            out += source()
        except (OSError, ValueError):  # no emoji font / no photo package installed
            continue
    return out
