"""Datasets (emoji, photo crops, image folders), WebDataset shards and the image transforms.

`transforms` is the only place uint8 <-> float [-1, 1] conversion happens. `ImageDataModule`
(Lightning) is imported lazily so that model code importing this package never pulls in
lightning.
"""

from __future__ import annotations

from typing import Any

from tokenizers_vis.data.build import DATASETS, build_dataset, parse_spec
from tokenizers_vis.data.emoji import EMOJI_GROUPS, EmojiDataset, load_emoji
from tokenizers_vis.data.errors import DataError, MissingDataError  # noqa: E402
from tokenizers_vis.data.folder import FolderDataset
from tokenizers_vis.data.photos import PhotoCropDataset
from tokenizers_vis.data.shards import ShardDataset, pack_dataset, shard_urls
from tokenizers_vis.data.transforms import BadImageError, load_rgb, to_pil, to_tensor, to_uint8

__all__ = [
    "DATASETS",
    "DataError",
    "MissingDataError",
    "EMOJI_GROUPS",
    "BadImageError",
    "EmojiDataset",
    "FolderDataset",
    "ImageDataModule",
    "PhotoCropDataset",
    "ShardDataset",
    "build_dataset",
    "load_emoji",
    "load_rgb",
    "pack_dataset",
    "parse_spec",
    "shard_urls",
    "to_pil",
    "to_tensor",
    "to_uint8",
]


def __getattr__(name: str) -> Any:
    if name == "ImageDataModule":
        from tokenizers_vis.data.datamodule import ImageDataModule

        return ImageDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
