"""Where the images of a streaming evaluation come from, one batch at a time.

A source yields ``(batch index, (b, 3, s, s) uint8, [(name, reason) of unreadable items])`` from
any batch index on (so a resumed run restarts where the feature cache ends), and holds at most
one batch of images in memory. Sources: every file of a folder through a protocol's crop; the
``arr_0`` array of an ADM-style ``.npz`` (read straight from the archive, never whole); any other
data spec through its dataset (already at the requested size).
"""

from __future__ import annotations

import hashlib
import itertools
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tokenizers_vis.evaluation.inputs import EvaluationError
from tokenizers_vis.evaluation.protocol import Protocol, folder_images, image_batches

Batch = tuple[int, Tensor, list[tuple[str, str]]]

__all__ = ["DatasetSource", "FolderSource", "NpzSource", "open_source"]

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass
class FolderSource:
    """Every image file of a folder, through the protocol's crop."""

    spec: str
    protocol: Protocol
    num_images: int | None = None
    files: list[Path] = field(init=False)

    def __post_init__(self) -> None:
        self.root, self.files = folder_images(self.spec, self.num_images)

    def __len__(self) -> int:
        return len(self.files)

    def identity(self) -> dict:
        """Names, sizes and modification times of the files: any change is a new key."""
        h = hashlib.sha1()
        for path in self.files:
            stat = path.stat()
            h.update(
                f"{path.relative_to(self.root).as_posix()}|{stat.st_size}|"
                f"{stat.st_mtime_ns}\n".encode()
            )
        return {
            "folder": str(self.root.resolve()),
            "files": len(self.files),
            "files_sha1": h.hexdigest(),
        }

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Batch]:
        return image_batches(self.files, self.protocol, batch_size, start)


class NpzSource:
    """The uint8 (n, h, w, 3) ``arr_0`` of an ADM sample / reference batch, streamed."""

    def __init__(self, path: str | Path, name: str = "arr_0", num_images: int | None = None):
        self.path, self.name = Path(path), name
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(f"{name}.npy") as f:
                version = np.lib.format.read_magic(f)
                if version not in _HEADER_READERS:
                    raise ValueError(f".npy format version {version} (1.0 and 2.0 are read)")
                shape, fortran, dtype = _HEADER_READERS[version](f)
                self.offset = f.tell()
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
            raise EvaluationError(f"{self.path}: no readable {name} array: {err}") from None
        if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3 or fortran:
            raise EvaluationError(
                f"{self.path}: {name} must be uint8 (n, h, w, 3) images, got {dtype} {shape}"
            )
        if num_images is not None and shape[0] < num_images:
            raise EvaluationError(
                f"{self.path}: {shape[0]} images, fewer than the {num_images} asked for"
            )
        self.shape = (num_images or shape[0], *shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def identity(self) -> dict:
        stat = self.path.stat()
        return {
            "npz": str(self.path.resolve()),
            "array": self.name,
            "shape": list(self.shape),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Batch]:
        n, h, w, _ = self.shape
        per_image = h * w * 3
        with zipfile.ZipFile(self.path) as archive, archive.open(f"{self.name}.npy") as f:
            f.seek(self.offset + start * batch_size * per_image)
            for index in range(start, -(-n // batch_size)):
                count = min(batch_size, n - index * batch_size)
                data = f.read(count * per_image)
                if len(data) != count * per_image:
                    raise EvaluationError(f"{self.path}: {self.name} ends early (truncated file)")
                array = np.frombuffer(data, np.uint8).reshape(count, h, w, 3)
                yield index, torch.from_numpy(array.copy()).permute(0, 3, 1, 2).contiguous(), []


@dataclass
class DatasetSource:
    """The first images of a data spec's split, at ``size`` (the dataset's own transform)."""

    spec: str
    split: str
    size: int
    num_images: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        from tokenizers_vis.data.build import build_dataset, parse_spec

        photos = parse_spec(self.spec)[0] == "photos"
        kwargs = {"deterministic": True, "seed": self.seed} if photos else {}
        try:
            self.dataset = build_dataset(self.spec, self.split, self.size, **kwargs)
        except (ValueError, OSError) as err:
            raise EvaluationError(f"data {self.spec} split {self.split}: {err}") from None
        if isinstance(self.dataset, torch.utils.data.IterableDataset):
            if self.num_images is None:
                raise EvaluationError(f"data {self.spec}: a stream; give --num-images")
            self.count = self.num_images
        else:
            self.count = len(self.dataset)
            if self.num_images is not None and self.count < self.num_images:
                raise EvaluationError(
                    f"data {self.spec} split {self.split}: {self.count} "
                    f"images, fewer than the {self.num_images} asked for"
                )
            self.count = self.num_images or self.count

    def __len__(self) -> int:
        return self.count

    def identity(self) -> dict:
        return {
            "data": self.spec,
            "split": self.split,
            "size": self.size,
            "images": self.count,
            "seed": self.seed,
        }

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Batch]:
        from tokenizers_vis.data.transforms import to_uint8

        if isinstance(self.dataset, torch.utils.data.IterableDataset):
            items = itertools.islice(self.dataset, start * batch_size, self.count)
        else:
            items = (self.dataset[i] for i in range(start * batch_size, self.count))
        for index in range(start, -(-self.count // batch_size)):
            chunk = list(itertools.islice(items, batch_size))
            yield index, torch.stack([to_uint8(x) for x, _ in chunk]), []  # (b 3 s s)


def open_source(
    data: str | Path,
    protocol: Protocol | None,
    split: str,
    size: int | None,
    num_images: int | None,
    seed: int = 0,
):
    """The source a ``--data`` / ``--samples`` argument names: an ``.npz``, a folder (through
    the protocol's crop, or at ``size``) or a data spec."""
    from tokenizers_vis.evaluation.inputs import canonical_spec

    text = str(data)
    if text.endswith(".npz") or (Path(text).is_file() and zipfile.is_zipfile(text)):
        if not Path(text).is_file():
            raise EvaluationError(f"{text}: no such file")
        return NpzSource(text, num_images=num_images)
    spec = canonical_spec(text)
    if protocol is not None and spec.startswith("folder:"):
        return FolderSource(spec, protocol, num_images)
    if protocol is not None:
        size = protocol.image_size
    if size is None:
        raise EvaluationError(f"data {spec}: give --size (or --protocol) for the image size")
    return DatasetSource(spec, split, size, num_images, seed)
