"""Folder: any directory tree of images, ImageNet-style class folders giving the labels.

Layout rules:
- If root has any of `train/`, `val/`, `test/`, those folders are the splits (a missing one is
  an error). Otherwise the split is a hash of each file's path relative to root: 90 % train,
  5 % val, 5 % test, so adding files never moves existing ones between splits. "all" takes
  every file.
- The label of a file is its first folder below the (split) root; sorted folder names are the
  `class_names`. Files lying directly in the root get the class ".".
- Hidden files and folders are ignored; extensions are matched case-insensitively.

Bad files: zero-byte files and files whose header Pillow cannot identify are dropped while
scanning (`verify=True`), with one warning that counts them by reason (`self.skipped`).
A file that only fails when fully decoded (e.g. truncated) is replaced by the next good item
in `__getitem__`, again with a counted warning, so a training run never dies on one file.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from tokenizers_vis.data.errors import DataError, MissingDataError
from tokenizers_vis.data.transforms import (
    MAX_PIXELS,
    BadImageError,
    BadImageWarning,
    WorkerGenerator,
    center_crop_resize,
    load_rgb,
    random_crop_flip,
    to_tensor,
)

__all__ = ["IMAGE_EXTENSIONS", "FolderDataset", "scan_images"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
_MAX_FALLBACKS = 16


def scan_images(root: str | os.PathLike) -> list[Path]:
    """Image files under root (recursively, symlinks followed), sorted by relative path."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath, name).relative_to(root))
    return sorted(found, key=lambda p: p.as_posix())


def _hash_split(rel: Path) -> str:
    bucket = int.from_bytes(hashlib.sha256(rel.as_posix().encode()).digest()[:8], "little") % 100
    return "train" if bucket < 90 else "val" if bucket < 95 else "test"


def _header_problem(path: Path) -> str | None:
    """Cheap check (stat + header parse, no pixel decode); the reason a file is bad, or None."""
    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return "empty (zero bytes)"
        with Image.open(path):
            return None
    except Image.DecompressionBombError:
        return "too large (decompression-bomb guard)"
    except (OSError, SyntaxError, ValueError):
        return "unreadable"


class FolderDataset(torch.utils.data.Dataset):
    """Images from a directory tree, labelled by their top-level folder.

    Args:
        root: the directory.
        split: "train", "val", "test" or "all" (see the module docstring).
        size: output side; images are centre-cropped to a square and Lanczos-resized.
        augment: random crop (area 0.8-1) and horizontal flip after resizing.
        seed: seed of the augmentation generator.
        verify: drop zero-byte and unidentifiable files while scanning (one header read each).
        max_pixels: decompression-bomb guard, see `load_rgb`.
        allow_empty: a split without images is an empty dataset instead of an error (packing
            a small folder, where the hash may assign a split no file).

    Items are `(image (3, size, size) float32 in [-1, 1], label int)`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "all",
        size: int = 64,
        augment: bool = False,
        seed: int = 0,
        verify: bool = True,
        max_pixels: int = MAX_PIXELS,
        allow_empty: bool = False,
    ):
        root = Path(root)
        if not root.is_dir():
            raise MissingDataError(f"not a directory: {root}")
        if split not in ("train", "val", "test", "all"):
            raise DataError(f"unknown split {split!r}; known: train, val, test, all")
        split_dirs = [s for s in ("train", "val", "test") if (root / s).is_dir()]
        if split != "all" and split_dirs:
            # An explicit layout is never mixed with hashing, which would leak train files.
            if split not in split_dirs and not allow_empty:
                raise MissingDataError(f"no {split}/ folder in {root} (it has {split_dirs})")
            root = root / split
            files = scan_images(root) if root.is_dir() else []
        else:
            files = [f for f in scan_images(root) if split in ("all", _hash_split(f))]
        self.skipped: Counter[str] = Counter()
        if verify:
            problems = {f: _header_problem(root / f) for f in files}
            self.skipped.update(p for p in problems.values() if p)
            files = [f for f in files if not problems[f]]
            if self.skipped:
                warnings.warn(f"{root}: skipped {_counts(self.skipped)}", BadImageWarning, 2)
        if not files and not allow_empty:
            raise MissingDataError(f"no readable images under {root} for split {split!r}")
        self.root, self.files, self.split, self.size = root, files, split, size
        folder = [f.parts[0] if len(f.parts) > 1 else "." for f in files]
        self.class_names: list[str] = sorted(set(folder))
        index = {c: i for i, c in enumerate(self.class_names)}
        self.labels = np.array([index[c] for c in folder], np.int64)  # (n,)
        self.augment, self.max_pixels = augment, max_pixels
        self._rng = WorkerGenerator(seed)

    def __len__(self) -> int:
        return len(self.files)

    def record(self, index: int) -> tuple[np.ndarray, int, dict]:
        """(uint8 (size, size, 3) image, label, JSON-able metadata).

        Raises:
            BadImageError: the file cannot be decoded.
        """
        path = self.root / self.files[index]
        im = load_rgb(path, self.max_pixels)
        info = {
            "source": path.as_posix(),
            "name": self.files[index].as_posix(),
            "split": self.split if self.split != "all" else _hash_split(self.files[index]),
            "original_size": list(im.size),
        }
        return np.asarray(center_crop_resize(im, self.size)), int(self.labels[index]), info

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(_MAX_FALLBACKS):
            i = (index + attempt) % len(self)
            try:
                image, label, _ = self.record(i)
                break
            except BadImageError as err:
                self.skipped[str(err).split(":")[0]] += 1
                msg = f"skipping {self.files[i]}: {err} ({self.skipped.total()} so far)"
                warnings.warn(msg, BadImageWarning, 2)
        else:
            raise BadImageError(f"{_MAX_FALLBACKS} bad images in a row from index {index}")
        x = to_tensor(image)  # (3 size size)
        if self.augment:
            x = random_crop_flip(x, self._rng())
        return x, label


def _counts(counter: Counter[str]) -> str:
    return (
        f"{counter.total()} bad files (" + ", ".join(f"{r}: {n}" for r, n in counter.items()) + ")"
    )
