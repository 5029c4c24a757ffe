"""`.vtoks`: many .vtok files in one, for data sets: append, and random access by index.

    "VTKS" | version (1 byte, 2) | record | record | ...
    record = L (4 bytes, little-endian) | name length (varint) | name (UTF-8)
             | CRC-32 of every byte of the record before it (4 bytes, little-endian) | .vtok bytes

`L` counts the bytes after itself. Every record is a complete .vtok file with its own header
and checksum, and (version 2) its length and name are covered by the record's own CRC-32, so a
flipped bit in a name is an error, not a silently renamed output. A damaged record damages
nothing else. Opening seeks from length to length (4 bytes read per record, no payload), after
which `box[i]` is one seek and one read. Version 1 containers (no name checksum: the CRC field
is absent) are still read, and appended to in their own version.

Names are relative paths (encode stores the input's path below its folder); the rules are in
`codec.record_names`. `append` refuses a bad name (`RecordNameError`); reading a record whose
name is bad or damaged raises `RecordError` for that record only, so a caller lists it and goes
on with the others.

Writing: mode "w" builds a new container under a temporary name and renames it on a clean
`close()` (an interrupted or failed run leaves nothing, not even the temporary file); mode "a"
appends in place, each record in one write, and an append interrupted mid-record (Ctrl-C) is
cut back off. A record left incomplete by a killed process is reported by `damaged_tail` on
reading and cut off by the next append.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import zlib
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from tokenizers_vis.atomic import blame_destination, temp_path
from tokenizers_vis.codec.format import VtokError, encode_varint, read_varint
from tokenizers_vis.codec.record_names import describe, name_problem
from tokenizers_vis.errors import VistokError

__all__ = [
    "CONTAINER_MAGIC",
    "CONTAINER_VERSION",
    "Container",
    "RecordError",
    "RecordNameError",
    "is_container",
]

CONTAINER_MAGIC = b"VTKS"
CONTAINER_VERSION = 2  # what we write; 1 (no name checksum) is still read
_VERSIONS = (1, 2)
_LENGTH = struct.Struct("<I")
_CRC = struct.Struct("<I")
# The shortest record body: a one-byte name length, a one-byte name and the shortest .vtok (27
# bytes: a header of one-byte fields, an empty payload, the CRC-32). A shorter length is damage,
# and scanning stops there: a hostile file of zero lengths cannot make millions of records.
_MIN_RECORD = 1 + 1 + 27


class RecordNameError(VistokError):
    """A name `Container.append` cannot store (see `codec.record_names`); nothing was written."""


class RecordError(VtokError):
    """One record of a container cannot be read (its name is damaged or not allowed); the other
    records can. `reason` is the one-line reason without the container's path and index.

    Attributes:
        index: the record's index.
        reason: why it cannot be read.
    """

    def __init__(self, path: Path, index: int, reason: str) -> None:
        super().__init__(f"{path}[{index}]: {reason}")
        self.index, self.reason = index, reason


def _regular(path: Path) -> bool:
    """True for a regular file (after symlinks): a FIFO or /dev/zero would block or never end."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def is_container(path: str | os.PathLike) -> bool:
    """True when `path` is a regular file starting with the container magic."""
    if not _regular(Path(path)):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(len(CONTAINER_MAGIC)) == CONTAINER_MAGIC
    except OSError:
        return False


class Container:
    """A .vtoks container.

    Args:
        path: the container file.
        mode: "r" read, "w" write a new one (atomically, on `close`), "a" append (created if
            missing).

    Attributes:
        version: the container's format version (new containers: `CONTAINER_VERSION`).
        damaged_tail: bytes after the last whole record: an incomplete last record (a killed
            append; the next append cuts it off), or everything after a length no record has
            (damage; appending is then refused).
    """

    def __init__(self, path: str | os.PathLike, mode: Literal["r", "w", "a"] = "r") -> None:
        if mode not in ("r", "w", "a"):
            raise ValueError(f"mode must be 'r', 'w' or 'a', got {mode!r}")
        self.path, self.mode = Path(path), mode
        self._offsets = array("Q")  # start of each record's length field
        self.damaged_tail = 0
        self._broken_at: int | None = None  # where a record length no record has was found
        self.version = CONTAINER_VERSION
        self._tmp: Path | None = None
        if mode == "w" or (mode == "a" and not os.path.lexists(self.path)):
            self._create(mode)
            return
        if not _regular(self.path):
            kind = "a directory" if self.path.is_dir() else "not a regular file"
            raise VtokError(f"{self.path}: {kind}, not a .vtoks container")
        self._file = open(self.path, "r+b" if mode == "a" else "rb")  # noqa: SIM115
        try:
            self._scan()
        except BaseException:
            self._file.close()
            raise
        if mode == "a" and self._broken_at is not None:
            self._file.close()
            raise VtokError(
                f"{self.path}: damaged at byte {self._broken_at} (a record length no record "
                f"has); not appending, which would cut off its last {self.damaged_tail} bytes"
            )
        if mode == "a" and self.damaged_tail:
            self._file.truncate(self._end)

    def _create(self, mode: str) -> None:
        if self.path.is_dir():  # refused before any work, not at the final rename
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(self.path))
        self._tmp = temp_path(self.path) if mode == "w" else None
        target = self._tmp or self.path
        with blame_destination(target, self.path):
            self._file: BinaryIO = open(target, "w+b")  # noqa: SIM115
        try:
            self._file.write(CONTAINER_MAGIC + bytes([self.version]))
        except BaseException:
            self.close(commit=False)
            raise
        self._end = len(CONTAINER_MAGIC) + 1

    def _scan(self) -> None:
        f = self._file
        prefix = f.read(len(CONTAINER_MAGIC) + 1)
        if prefix[:4] != CONTAINER_MAGIC:
            raise VtokError(f"{self.path}: not a .vtoks container")
        if len(prefix) < 5 or prefix[4] not in _VERSIONS:
            version = prefix[4] if len(prefix) > 4 else "?"
            raise VtokError(f"{self.path}: container version {version} is not supported")
        self.version = prefix[4]
        shortest = _MIN_RECORD + (_CRC.size if self.version >= 2 else 0)
        size = f.seek(0, os.SEEK_END)
        pos = len(prefix)
        while pos < size:
            f.seek(pos)
            head = f.read(_LENGTH.size)
            length = _LENGTH.unpack(head)[0] if len(head) == _LENGTH.size else None
            if length is None or pos + _LENGTH.size + length > size:
                self.damaged_tail = size - pos  # a killed append: cut off by the next one
                break
            if length < shortest:  # corruption, not an interrupted append: framing is lost
                self.damaged_tail, self._broken_at = size - pos, pos
                break
            self._offsets.append(pos)
            pos += _LENGTH.size + length
        self._end = pos

    def __len__(self) -> int:
        return len(self._offsets)

    def record(self, index: int) -> tuple[str, bytes]:
        """(name, .vtok bytes) of record `index` (negative counts from the end).

        Raises:
            IndexError: no such record.
            RecordError: this record's name is damaged (checksum), not UTF-8 or not allowed.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        index %= len(self)
        self._file.seek(self._offsets[index])
        head = self._file.read(_LENGTH.size)
        body = self._file.read(_LENGTH.unpack(head)[0])
        try:
            n, start = read_varint(body, 0, "name length")
        except VtokError:
            raise RecordError(self.path, index, "damaged record: its name length") from None
        stop = start + n
        check = _CRC.size if self.version >= 2 else 0
        if stop + check > len(body):
            raise RecordError(self.path, index, "damaged record: its name runs past its end")
        if check and _CRC.unpack_from(body, stop)[0] != zlib.crc32(head + body[:stop]):
            raise RecordError(self.path, index, "damaged record: its name fails its checksum")
        try:
            name = body[start:stop].decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError(self.path, index, "record name is not valid UTF-8") from None
        problem = name_problem(name)
        if problem is not None:
            raise RecordError(self.path, index, describe(name, problem))
        return name, body[stop + check :]

    def __getitem__(self, index: int) -> bytes:
        return self.record(index)[1]

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        """Every record in order; a bad record raises its `RecordError` (use `record(i)` in a
        loop to go on past it)."""
        for i in range(len(self)):
            yield self.record(i)

    def append(self, name: str, data: bytes) -> int:
        """Add one .vtok file under `name`; returns its index.

        Raises:
            RecordNameError: `name` is not a record name (`codec.record_names`).
        """
        if self.mode == "r":
            raise ValueError("container opened read-only")
        if len(data) < _MIN_RECORD - 2:  # a reader would take it for damage
            raise ValueError(
                f"{len(data)} bytes cannot be a .vtok file (at least {_MIN_RECORD - 2})"
            )
        problem = name_problem(name)
        if problem is not None:
            raise RecordNameError(describe(name, problem))
        raw = name.encode("utf-8")
        named = encode_varint(len(raw)) + raw
        check = _CRC.size if self.version >= 2 else 0
        length = len(named) + check + len(data)
        if length >= 1 << 32:
            raise ValueError("a record must be under 4 GiB")
        head = _LENGTH.pack(length)
        crc = _CRC.pack(zlib.crc32(head + named)) if check else b""
        self._file.seek(self._end)
        try:
            self._file.write(head + named + crc + data)
            self._file.flush()
        except BaseException:  # Ctrl-C mid-write: the container keeps its complete records
            self._file.truncate(self._end)
            raise
        self._offsets.append(self._end)
        self._end += _LENGTH.size + length
        return len(self._offsets) - 1

    def close(self, commit: bool = True) -> None:
        """Close; in mode "w", rename the temporary file into place (or drop it if not
        `commit`). Whatever fails, no temporary file is left, and an error names `path`."""
        if self._file.closed:
            return
        tmp, self._tmp = self._tmp, None
        try:
            with blame_destination(tmp or self.path, self.path):
                if self.mode != "r" and (commit or tmp is None):  # appends are kept
                    os.fsync(self._file.fileno())
                self._file.close()
                if tmp is not None and commit:
                    os.replace(tmp, self.path)
        finally:
            if not self._file.closed:
                self._file.close()
            if tmp is not None:
                tmp.unlink(missing_ok=True)  # gone after the rename; a failure's leftover

    def __enter__(self) -> Container:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(commit=exc_type is None)
