"""Reading files a user (or an attacker) named: only regular files, only inside the folder that
holds them, never more bytes or nesting than `tokenizers_vis.limits` allows.

Every JSON file vistok parses goes through `read_json` (a pretrained `config.json`, an entropy
model's JSON, a static table's `entropy_static.json`), and every read of a pretrained directory
through `open_regular`:

- the file is opened without blocking (`O_NONBLOCK`: opening a FIFO with no writer returns at
  once) and checked on the open descriptor (`fstat`), so a FIFO, `/dev/zero`, a socket or a
  directory is refused before one byte is read, and a file swapped after a check is still the
  one checked;
- with `within`, a symlink is followed only when it resolves inside that folder (a pretrained
  directory's `config.json -> /etc/shadow` or `model.safetensors -> /dev/zero` is refused with a
  message; a link between files of the folder is fine);
- its size is compared with the limit before reading, and no more than the limit is read even
  if the file grows meanwhile;
- bytes that are not UTF-8 are refused naming the file and the offset;
- nesting is measured on the raw bytes (strings removed, brackets counted) before `json.loads`,
  so a 100,000-deep array is a one-line `LimitError`, never a `RecursionError`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits, check_limit

__all__ = ["check_inside", "json_depth", "open_regular", "parse_json", "read_bytes", "read_json"]

# A JSON string: a quote, then runs of plain characters or escapes, then a quote (unrolled so it
# runs in linear time on any input).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO, a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "an unknown kind")


def check_inside(path: str | os.PathLike, root: str | os.PathLike, error: type[Exception]) -> None:
    """Refuse `path` when, symlinks resolved, it lies outside `root` (itself resolved).

    A pretrained directory (or an input folder) is one unit: a link from one of its files to
    another is followed, a link out of it is not, since loading, hashing and copying the folder
    would then read whatever the link points at (`/dev/zero`, another user's file).
    """
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if not real.is_relative_to(base):
        raise error(
            f"{path} is a symlink to {real}, outside {root}: not followed (symlinks are followed "
            "only inside the directory; copy the file in instead)"
        )


def open_regular(
    path: str | os.PathLike,
    error: type[Exception] = VistokError,
    within: str | os.PathLike | None = None,
) -> BinaryIO:
    """Open `path` for binary reading if it is a regular file (checked on the open descriptor).

    Args:
        path: the file.
        error: the exception class raised (the caller's own, e.g. `PretrainedError`).
        within: when given, `path` must resolve inside this folder (`check_inside`).

    Raises:
        error: missing, unreadable, a symlink out of `within`, or not a regular file.
    """
    if within is not None:
        check_inside(path, within, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except OSError as err:
        raise error(f"{path}: {err.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path} is not a regular file ({_kind(mode)})")
    return os.fdopen(fd, "rb")


def read_bytes(
    path: str | os.PathLike,
    what: str,
    limits: Limits,
    limit: str,
    error: type[Exception] = VistokError,
    within: str | os.PathLike | None = None,
) -> bytes:
    """The bytes of a regular file whose size `limits.<limit>` bounds, checked before reading.

    Raises:
        error: as `open_regular`.
        LimitError: the file is larger than the limit (before a byte is read).
    """
    with open_regular(path, error, within) as f:
        check_limit(path, what, os.fstat(f.fileno()).st_size, limits, limit)
        bound = getattr(limits, limit)
        data = f.read(bound + 1)  # a file that grew since the check is still bounded
    check_limit(path, what, len(data), limits, limit)
    return data


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON bytes, counted without parsing: string
    literals removed, then a running sum of the brackets left (an upper bound for text that is
    not valid JSON, which the parser refuses anyway)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def parse_json(
    data: bytes,
    source: str | os.PathLike,
    limits: Limits = DEFAULT_LIMITS,
    error: type[Exception] = VistokError,
) -> Any:
    """Parse JSON bytes from `source` after checking their encoding and nesting (their size is
    the reader's to bound: `read_json`, or a safetensors header against its own limit).

    Raises:
        LimitError: deeper nesting than `limits` allows.
        error: not UTF-8, or not JSON (naming `source`).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = data[err.start : err.start + 1]
        raise error(
            f"{source} is not valid JSON: not UTF-8 text (byte {bad!r} at offset {err.start})"
        ) from None
    check_limit(source, "JSON nesting depth", json_depth(data), limits, "max_json_depth")
    try:
        return json.loads(text)
    except RecursionError:  # a depth limit raised beyond what this interpreter's stack holds
        raise error(f"{source} nests too deep for this Python to parse") from None
    except ValueError as err:  # JSONDecodeError, an integer beyond Python's digit limit
        raise error(f"{source} is not valid JSON: {err}") from None


def read_json(
    path: str | os.PathLike,
    limits: Limits = DEFAULT_LIMITS,
    error: type[Exception] = VistokError,
    within: str | os.PathLike | None = None,
) -> Any:
    """A JSON file, read through `read_bytes` and parsed by `parse_json` (see the module doc).

    Raises:
        error: missing, not a regular file, a symlink out of `within`, not UTF-8, not JSON.
        LimitError: larger or deeper than `limits` allows.
    """
    data = read_bytes(path, "JSON bytes", limits, "max_json_bytes", error, within)
    return parse_json(data, path, limits, error)
