"""Read the JPEG photographs stored inside an Enlightenment `.edj` wallpaper (an EET archive).

Debian's `enlightenment-data` ships its wallpapers as Edje files: an EET archive holding an
`edje/images/N` entry per resolution (853x480 to 7680x4320), each a plain baseline JPEG (lossy
images are written uncompressed, so the entry's bytes are the JPEG file). We read only the
archive's directory, the one layout the EET format (version 2, big-endian) defines:

    header     int32 magic 0x1EE70F42, int32 entries, int32 dictionary entries
    directory  per entry 6 x int32: data offset, size, uncompressed size, name offset,
               name size (with its NUL), flags (bit 0 compressed, bit 1 ciphered)

and take the largest JPEG entry no longer than `max_side`, so the photo loads at about the
resolution the data pipeline keeps anyway. Entries that are compressed, ciphered or not a JPEG
(the Edje program, vector wallpapers) are skipped. Nothing here unpickles or executes anything.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

from PIL import Image

from tokenizers_vis.data.errors import DataError

__all__ = ["EET_MAGIC", "jpeg_entries", "largest_jpeg"]

EET_MAGIC = 0x1EE70F42
_HEADER = struct.Struct(">3i")
_ENTRY = struct.Struct(">6i")
_JPEG_SOI = b"\xff\xd8\xff"
_MAX_ENTRIES = 100_000  # a real wallpaper has ~20; more means a corrupt header


def _directory(data: bytes, name: str) -> list[tuple[str, int, int, int]]:
    """(entry name, offset, size, flags) of every entry in the archive `data`."""
    if len(data) < _HEADER.size:
        raise DataError(f"{name}: not an EET archive (too short)")
    magic, count, _ = _HEADER.unpack_from(data)
    if magic != EET_MAGIC or not 0 <= count <= _MAX_ENTRIES:
        raise DataError(f"{name}: not an EET archive (magic {magic:#x}, {count} entries)")
    end = _HEADER.size + count * _ENTRY.size
    if end > len(data):
        raise DataError(f"{name}: EET directory runs past the end of the file")
    entries = []
    for i in range(count):
        offset, size, _, name_at, name_len, flags = _ENTRY.unpack_from(data, _HEADER.size + i * 24)
        if min(offset, size, name_at, name_len) < 0 or max(offset + size, name_at + name_len) > len(
            data
        ):
            raise DataError(f"{name}: EET entry {i} points outside the file")
        entry = data[name_at : name_at + name_len].split(b"\0", 1)[0].decode("utf-8", "replace")
        entries.append((entry, offset, size, flags))
    return entries


def jpeg_entries(path: str | os.PathLike) -> list[tuple[str, tuple[int, int], bytes]]:
    """(entry name, (width, height), JPEG bytes) of every plain JPEG entry of an EET file.

    Raises:
        DataError: the file is not a readable EET archive.
    """
    path = Path(path)
    data = path.read_bytes()
    out = []
    for entry, offset, size, flags in _directory(data, path.name):
        blob = data[offset : offset + size]
        if flags & 0b11 or not blob.startswith(_JPEG_SOI):  # compressed/ciphered, or not a JPEG
            continue
        with Image.open(io.BytesIO(blob)) as image:  # reads the header only
            out.append((entry, image.size, blob))
    return out


def largest_jpeg(path: str | os.PathLike, max_side: int | None = None) -> bytes:
    """The JPEG bytes of the largest image in an EET file whose long side is <= `max_side`
    (the smallest one when none is; the largest of all when `max_side` is None).

    Raises:
        DataError: not an EET archive, or it holds no plain JPEG.
    """
    entries = jpeg_entries(path)
    if not entries:
        raise DataError(f"{Path(path).name}: no JPEG image inside")
    by_pixels = sorted(entries, key=lambda e: e[1][0] * e[1][1])
    fitting = [e for e in by_pixels if max_side is None or max(e[1]) <= max_side]
    return (fitting[-1] if fitting else by_pixels[0])[2]
