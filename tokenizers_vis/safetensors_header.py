"""A safetensors header read and checked by us before the file reaches the safetensors library.

The format: 8 bytes (little-endian u64) giving the header's length N, N bytes of JSON
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`, then the
tensor bytes, offsets relative to their start. The library parses the whole header before it
checks anything of ours, so a 70 MB header of a million empty tensors costs seconds and a
gigabyte before any refusal. Here, in order, each before the next costs anything:

1. the file is a regular file (inside the directory, `safe_read.open_regular`);
2. N against `limits.max_header_bytes` and against the file's size;
3. an upper bound on the tensor count (every entry is a JSON object, so the `{` bytes bound
   them) against `limits.max_tensors`: a million-tensor header is refused in milliseconds;
4. UTF-8 and nesting (`safe_read.parse_json`), then every entry: a known dtype, a shape of
   non-negative integers, offsets that are integers, match dtype x shape, and tile the data
   section exactly (what safetensors would also demand, said here with the tensor's name);
5. the parameters the tensors hold against `limits.max_parameters`.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits, check_limit
from tokenizers_vis.safe_read import open_regular, parse_json

__all__ = ["DTYPE_BITS", "TensorInfo", "read_header"]

# Bits per element of each dtype the safetensors format defines.
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it (offsets relative to the data section)."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor(name: str, entry: Any, bad: Callable[[str], Exception]) -> TensorInfo:
    """One header entry, checked on its own (dtype, shape, offsets match its size)."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise bad(f"tensor {name!r} needs dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(map(_is_count, shape)):
        raise bad(f"tensor {name!r} has shape {shape!r}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise bad(f"tensor {name!r} has data_offsets {offsets!r}")
    begin, end = offsets
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        raise bad(
            f"tensor {name!r} ({dtype} {shape}) needs {bits / 8:g} bytes, its offsets "
            f"span {end - begin}"
        )
    return TensorInfo(dtype, tuple(shape), begin, end)


def read_header(
    path: str | os.PathLike,
    limits: Limits = DEFAULT_LIMITS,
    error: type[Exception] = VistokError,
    within: str | os.PathLike | None = None,
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensors and metadata of a safetensors file, checked as the module doc says.

    Args:
        path: the file.
        limits: `max_header_bytes`, `max_tensors`, `max_json_depth`, `max_parameters` apply.
        error: the exception class of a damaged file (the caller's own).
        within: when given, `path` must resolve inside this folder.

    Returns:
        ({name: TensorInfo}, metadata).

    Raises:
        error: not a regular file, truncated, damaged or inconsistent, naming the file.
        LimitError: header, tensor count or parameters above `limits`.
    """

    def bad(reason: str) -> Exception:
        return error(f"{path} is not a readable safetensors file: {reason}")

    with open_regular(path, error, within) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, shorter than a header")
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:  # garbage or a cut file, before any limit speaks
            raise bad(f"truncated: its header claims {length:,} bytes of {size:,}")
        check_limit(path, "safetensors header bytes", length, limits, "max_header_bytes")
        raw = f.read(length)
    if len(raw) < length:
        raise bad(f"truncated: its header claims {length:,} bytes")
    # Each entry (and the metadata) is one JSON object: the `{` bytes bound the entries.
    check_limit(path, "safetensors tensors", raw.count(b"{") - 1, limits, "max_tensors")
    try:
        doc = parse_json(raw, "its header", limits, ValueError)
    except ValueError as err:
        raise bad(str(err)) from None
    if not isinstance(doc, dict):
        raise bad("the header is not a JSON object")
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise bad("__metadata__ must map names to strings")
    tensors = {name: _tensor(name, entry, bad) for name, entry in doc.items()}
    check_limit(
        path, "parameters", sum(t.numel for t in tensors.values()), limits, "max_parameters"
    )
    position = 0  # the tensors must tile the data section, as safetensors demands
    for name, t in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if t.begin != position:
            raise bad(f"tensor {name!r} starts at {t.begin}, expected {position}")
        position = t.end
    if position != size - 8 - length:
        raise bad(f"the tensors span {position:,} bytes, the file holds {size - 8 - length:,}")
    return tensors, metadata
