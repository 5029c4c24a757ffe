"""JPEG / WebP rows of an evaluation, cached on disk across tokenizers (see `CodecCache`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from torch import Tensor

from tokenizers_vis.atomic import atomic_write


class CodecCache:
    """JPEG / WebP rows on disk, shared by every tokenizer evaluated on the same images.

    A codec row depends on the images, the codec and quality, the metrics and their settings;
    not on the tokenizer. On CPU the full default sweep (30 qualities) is ~80 % of a run, so
    evaluating another checkpoint on the same split reuses it. The key holds a digest of the
    image bytes (so a changed data set never hits), Pillow's codec library versions and a digest
    of the metric source files (so a fixed metric never serves stale numbers).

    Args:
        root: cache folder; None disables the cache.
        images: (n, 3, h, w) uint8, the evaluated images.
        context: the metric settings, e.g. extractor id, perceptual name, FID on / off, seed.
    """

    def __init__(self, root: Path | None, images: Tensor, context: dict) -> None:
        from PIL import __version__ as pillow
        from PIL import features

        self.root, self.hits = root, 0
        self.base = {
            **context,
            "images_sha1": hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest(),
            "shape": list(images.shape),
            "pillow": pillow,
            "libjpeg": features.version("jpg"),
            "libwebp": features.version("webp"),
            "code": _metrics_code_digest(),
        }

    def _entry(self, codec: str, quality: int) -> tuple[Path, str]:
        key = json.dumps({**self.base, "codec": codec, "quality": quality}, sort_keys=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:24]
        return self.root / f"{codec}-q{quality}-{name}.json", key

    def get(self, codec: str, quality: int) -> dict | None:
        """The cached row, or None (disabled, missing, unreadable or another key)."""
        if self.root is None:
            return None
        path, key = self._entry(codec, quality)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if stored.get("key") != key:
            return None
        self.hits += 1
        return stored["row"]

    def put(self, codec: str, quality: int, row: dict) -> None:
        if self.root is None:
            return
        path, key = self._entry(codec, quality)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({"key": key, "row": row}, allow_nan=True).encode())
        except OSError:  # a read-only cache only costs time
            pass


def _metrics_code_digest() -> str:
    import tokenizers_vis.data.transforms as transforms
    import tokenizers_vis.layers.inception as inception
    import tokenizers_vis.losses.perceptual as perceptual
    import tokenizers_vis.metrics.feature_statistics as feature_statistics
    import tokenizers_vis.metrics.fid as fid
    import tokenizers_vis.metrics.inception_score as inception_score
    import tokenizers_vis.metrics.precision_recall as precision_recall
    import tokenizers_vis.metrics.rate as rate
    import tokenizers_vis.metrics.reconstruction as reconstruction
    import tokenizers_vis.metrics.sfid as sfid
    import tokenizers_vis.metrics.suite as suite

    h = hashlib.sha1()
    modules = (transforms, inception, perceptual, fid, rate, reconstruction, feature_statistics,
               inception_score, precision_recall, sfid, suite)  # fmt: skip
    for module in modules:
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]
