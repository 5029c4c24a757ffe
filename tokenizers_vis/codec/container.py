"""`.vtoks`: many .vtok files in one, for data sets: append, and random access by index.

    "VTKS" | version (1 byte) | record | record | ...
    record = length L (4 bytes, little-endian) | name length (varint) | name (UTF-8) | .vtok bytes

`L` counts the bytes after itself. Every record is a complete .vtok file with its own header
and checksum, so a record reads like a file and a damaged one damages nothing else. Opening
seeks from length to length (4 bytes read per record, no payload), after which `box[i]` is one
seek and one read. Names are free text (encode stores the input's relative path); decoding
sanitises them before using them as paths.

Writing: mode "w" builds a new container under a temporary name and renames it on a clean
`close()` (an interrupted run leaves nothing); mode "a" appends in place, each record in one
write, and an append interrupted mid-record (Ctrl-C) is cut back off. A record left incomplete
by a killed process is reported by `damaged_tail` on reading and cut off by the next append.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

from tokenizers_vis.atomic import temp_path
from tokenizers_vis.codec.format import TruncatedError, VtokError, _Reader, encode_varint

__all__ = ["CONTAINER_MAGIC", "Container", "is_container"]

CONTAINER_MAGIC = b"VTKS"
CONTAINER_VERSION = 1
_PREFIX = CONTAINER_MAGIC + bytes([CONTAINER_VERSION])
_LENGTH = struct.Struct("<I")


def is_container(path: str | os.PathLike) -> bool:
    """True when the file starts with the container magic."""
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
    """

    def __init__(self, path: str | os.PathLike, mode: Literal["r", "w", "a"] = "r") -> None:
        if mode not in ("r", "w", "a"):
            raise ValueError(f"mode must be 'r', 'w' or 'a', got {mode!r}")
        self.path, self.mode = Path(path), mode
        self._offsets: list[int] = []  # start of each record's length field
        self.damaged_tail = 0  # bytes of an incomplete last record
        self._tmp: Path | None = None
        if mode == "w" or (mode == "a" and not self.path.exists()):
            self._tmp = temp_path(self.path) if mode == "w" else None
            self._file: BinaryIO = open(self._tmp or self.path, "w+b")  # noqa: SIM115
            self._file.write(_PREFIX)
            self._end = len(_PREFIX)
            return
        self._file = open(self.path, "r+b" if mode == "a" else "rb")  # noqa: SIM115
        try:
            self._scan()
        except BaseException:
            self._file.close()
            raise
        if mode == "a" and self.damaged_tail:
            self._file.truncate(self._end)

    def _scan(self) -> None:
        f = self._file
        prefix = f.read(len(_PREFIX))
        if prefix[:4] != CONTAINER_MAGIC:
            raise VtokError(f"{self.path}: not a .vtoks container")
        if len(prefix) < len(_PREFIX) or prefix[4] != CONTAINER_VERSION:
            version = prefix[4] if len(prefix) > 4 else "?"
            raise VtokError(f"{self.path}: container version {version} is not supported")
        size = f.seek(0, os.SEEK_END)
        pos = len(_PREFIX)
        while pos < size:
            f.seek(pos)
            head = f.read(_LENGTH.size)
            if len(head) < _LENGTH.size or pos + _LENGTH.size + _LENGTH.unpack(head)[0] > size:
                self.damaged_tail = size - pos
                break
            self._offsets.append(pos)
            pos += _LENGTH.size + _LENGTH.unpack(head)[0]
        self._end = pos

    def __len__(self) -> int:
        return len(self._offsets)

    def record(self, index: int) -> tuple[str, bytes]:
        """(name, .vtok bytes) of record `index` (negative counts from the end)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        pos = self._offsets[index]
        self._file.seek(pos)
        (length,) = _LENGTH.unpack(self._file.read(_LENGTH.size))
        body = self._file.read(length)
        reader = _Reader(body)
        try:
            name = reader.take(reader.varint("name length"), "name").decode("utf-8", "replace")
        except TruncatedError:
            raise VtokError(f"{self.path}: record {index} has a damaged name") from None
        return name, body[reader.pos :]

    def __getitem__(self, index: int) -> bytes:
        return self.record(index)[1]

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for i in range(len(self)):
            yield self.record(i)

    def append(self, name: str, data: bytes) -> int:
        """Add one .vtok file under `name`; returns its index."""
        if self.mode == "r":
            raise ValueError("container opened read-only")
        raw = name.encode("utf-8")
        body = encode_varint(len(raw)) + raw + data
        if len(body) >= 1 << 32:
            raise ValueError("a record must be under 4 GiB")
        self._file.seek(self._end)
        try:
            self._file.write(_LENGTH.pack(len(body)) + body)
            self._file.flush()
        except BaseException:  # Ctrl-C mid-write: the container keeps its complete records
            self._file.truncate(self._end)
            raise
        self._offsets.append(self._end)
        self._end += _LENGTH.size + len(body)
        return len(self._offsets) - 1

    def close(self, commit: bool = True) -> None:
        """Close; in mode "w", rename the temporary file into place (or drop it if not
        `commit`)."""
        if self._file.closed:
            return
        if self.mode != "r":
            os.fsync(self._file.fileno())
        self._file.close()
        if self._tmp is not None:
            if commit:
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(commit=exc_type is None)
