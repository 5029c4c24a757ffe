"""`build_dataset`: one spelling of "which data" for CLIs, YAML configs and Python.

Specs:
    "emoji"                       EmojiDataset
    "photos"                      PhotoCropDataset
    "folder:/path/to/images"      FolderDataset
    "shards:/dir" | "shards:/dir/train-*.tar" | "shards:/dir/train-{000000..000009}.tar"
                                  ShardDataset (one ordered pass unless told otherwise)
    {"name": "folder", "root": "/path", ...}   the dict form; other keys are constructor
                                               arguments, overridden by keyword arguments
    '{"name": "photos", "zoom": [1, 32]}'      the dict form as JSON text, for command lines
                                               (`vistok eval tokenizer --data '{...}'`)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tokenizers_vis.data.emoji import EmojiDataset
from tokenizers_vis.data.errors import DataError
from tokenizers_vis.data.folder import FolderDataset
from tokenizers_vis.data.photos import PhotoCropDataset
from tokenizers_vis.data.shards import ShardDataset

__all__ = ["DATASETS", "build_dataset", "parse_spec"]


def _emoji(split: str, size: int, **kw: Any) -> EmojiDataset:
    return EmojiDataset(split=split, size=size, **kw)


def _photos(split: str, size: int, **kw: Any) -> PhotoCropDataset:
    return PhotoCropDataset(split=split, size=size, **kw)


def _folder(split: str, size: int, root: str, **kw: Any) -> FolderDataset:
    return FolderDataset(root, split=split, size=size, **kw)


def _shards(split: str, size: int, urls: str, **kw: Any) -> ShardDataset:
    return ShardDataset(urls, size=size, split=split, **kw)


# name -> (builder, name of the path argument after the colon, or None)
DATASETS: dict[str, tuple[Callable[..., Any], str | None]] = {
    "emoji": (_emoji, None),
    "photos": (_photos, None),
    "folder": (_folder, "root"),
    "shards": (_shards, "urls"),
}


def _known() -> str:
    return ", ".join(f"{n}:<{arg}>" if arg else n for n, (_, arg) in DATASETS.items())


MAX_JSON_SPEC = 65536  # characters: a spec is a handful of keys, never a document


def _json_spec(text: str) -> dict:
    if len(text) > MAX_JSON_SPEC:
        raise DataError(f"a JSON data spec is at most {MAX_JSON_SPEC} characters, got {len(text)}")
    try:
        spec = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise DataError(f"data spec {text[:80]!r} is not valid JSON: {err}") from None
    if not isinstance(spec, dict):
        raise DataError(f"a JSON data spec must be an object, got {type(spec).__name__}")
    return spec


def parse_spec(spec: str | dict) -> tuple[str, dict[str, Any]]:
    """A data spec -> (dataset name, constructor kwargs).

    Raises:
        DataError: unknown name, a missing path or malformed JSON, with the known specs listed.
    """
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        spec = _json_spec(spec)
    if isinstance(spec, dict):
        kwargs = dict(spec)
        name = str(kwargs.pop("name", ""))
    else:
        name, _, path = str(spec).partition(":")
        kwargs = {}
        if name in DATASETS and DATASETS[name][1] and path:
            kwargs[DATASETS[name][1]] = path
    if name not in DATASETS:
        raise DataError(f"unknown dataset {spec!r}; known: {_known()}")
    arg = DATASETS[name][1]
    if arg and not kwargs.get(arg):
        raise DataError(f"dataset {name!r} needs a path: {name}:<{arg}>")
    return name, kwargs


def build_dataset(spec: str | dict, split: str = "train", size: int = 32, **kwargs: Any):
    """Build the dataset a spec names.

    Args:
        spec: see the module docstring.
        split: "train", "val", "test" (or "all" for the map-style datasets).
        size: output image side in pixels.
        **kwargs: constructor arguments (e.g. augment, seed, cache_dir, scale).

    Returns:
        A dataset of `(image (3, size, size) float32 in [-1, 1], label int)`.
    """
    if not isinstance(size, int) or size < 1:
        raise DataError(f"size must be a positive integer, got {size!r}")
    name, spec_kwargs = parse_spec(spec)
    return DATASETS[name][0](split, size, **{**spec_kwargs, **kwargs})
