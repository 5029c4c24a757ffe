"""Why a data spec gives no data set: user errors (`tokenizers_vis.errors.VistokError`), so a
command reports them in one line. `MissingDataError` is also a `FileNotFoundError`, which callers
that skip a split with no files catch."""

from __future__ import annotations

from tokenizers_vis.errors import VistokError

__all__ = ["DataError", "MissingDataError"]


class DataError(VistokError):
    """A data spec or split that names no data set (unknown name, missing path, bad size)."""


class MissingDataError(FileNotFoundError, DataError):
    """The data a spec names is not on disk: no such folder, no images, no shards."""
