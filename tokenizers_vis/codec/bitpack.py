"""Fixed-width bit-packing of token ids: `ceil(log2 V)` bits per id per sub-codebook.

Rows of unsigned integers are written one after another, the columns of a row in order, each
value in its own column's width, most significant bit first; the stream ends with zero bits up
to a whole byte. For token ids the rows are token positions and the columns sub-codebooks, so the
first k tokens of a sequence are the first `k * sum(widths)` bits: a prefix is a bit prefix.

Why fixed widths and not mixed-radix (the whole sequence as one number in base V):
- For power-of-two vocabularies (VQ 1024/4096/8192, FSQ 8^4 = 4096: the shipped model) the two
  are identical; for FSQ 64,000 (8,8,8,5,5,5) the fixed width costs 16 bits against
  log2(64000) = 15.966, i.e. 0.2 %; only tiny vocabularies waste more (V = 125: 7 vs 6.97 bits).
- Every id sits at a computable bit offset, so packing and unpacking are vectorised numpy and any
  tile or prefix can be read without decoding what precedes it; mixed-radix needs big-integer
  arithmetic that is quadratic in the sequence length.
- Entropy coding (a later payload coding, see docs/token-format.md) removes far more than the
  fractional bit mixed-radix would save, and it replaces this packing rather than building on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_WIDTH", "bit_width", "bit_widths", "pack", "packed_bytes", "unpack"]

# Values travel as uint64; 32 bits covers every vocabulary up to 2^32 with room to spare.
MAX_WIDTH = 32


def bit_width(size: int) -> int:
    """Bits for one value in 0..size-1: `ceil(log2 size)`; 0 for size 1 (nothing to store)."""
    if size < 1:
        raise ValueError(f"a vocabulary or range must have at least 1 value, got {size}")
    width = (size - 1).bit_length()
    if width > MAX_WIDTH:
        raise ValueError(f"size {size} needs {width} bits; at most {MAX_WIDTH} are supported")
    return width


def bit_widths(sizes: Sequence[int]) -> tuple[int, ...]:
    """`bit_width` of each size (one per sub-codebook)."""
    return tuple(bit_width(int(s)) for s in sizes)


def packed_bytes(rows: int, widths: Sequence[int]) -> int:
    """Bytes that `pack` writes for `rows` rows: `ceil(rows * sum(widths) / 8)`."""
    return (rows * sum(widths) + 7) // 8


def _layout(rows: int, widths: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per value (row-major): its width, and a (rows*c, W) mask of which of its W = max width
    most-significant-first bit slots it uses (the last `width` of them)."""
    width = np.tile(np.asarray(widths, dtype=np.int64), rows)  # (rows*c)
    most = max(widths, default=0)
    used = np.arange(most)[None, :] >= (most - width)[:, None]  # (rows*c W)
    return width, used, most


def pack(values: np.ndarray, widths: Sequence[int]) -> bytes:
    """Pack a (n, c) array of non-negative integers, column j in `widths[j]` bits.

    Args:
        values: (n, c) integer array (any integer dtype); every value must fit its column.
        widths: c bit widths, each 0..MAX_WIDTH.

    Returns:
        `packed_bytes(n, widths)` bytes.
    """
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != len(widths):
        raise ValueError(f"values must be (n, {len(widths)}), got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer) or (values.size and values.min() < 0):
        raise ValueError("values must be non-negative integers")
    flat = values.astype(np.uint64).reshape(-1)  # (n*c) row-major: the stream's order
    width, used, most = _layout(len(values), widths)
    too_big = flat >> width.astype(np.uint64) != 0  # (n*c)
    if too_big.any():
        j = int(np.argmax(too_big))
        raise ValueError(
            f"value {int(flat[j])} needs > {int(width[j])} bits (column {j % len(widths)})"
        )
    shifts = np.arange(most - 1, -1, -1, dtype=np.uint64)  # (W)
    bits = ((flat[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)  # (n*c W)
    return np.packbits(bits[used]).tobytes()  # (n * sum(widths)) bits, zero-padded


def unpack(data: bytes | memoryview, rows: int, widths: Sequence[int]) -> np.ndarray:
    """Inverse of `pack`: the first `packed_bytes(rows, widths)` bytes of `data` -> (rows, c).

    Returns:
        (rows, c) int64 array.
    """
    total = rows * sum(widths)
    needed = (total + 7) // 8
    if len(data) < needed:
        raise ValueError(f"need {needed} bytes for {rows} rows, got {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8, count=needed)
    stream = np.unpackbits(raw, count=total)  # (total)
    width, used, most = _layout(rows, widths)
    # Right-align each value's bits in 32 slots, so 4 packed bytes per value read as big-endian.
    slots = np.zeros((len(width), MAX_WIDTH), dtype=np.uint8)  # (rows*c 32)
    slots[:, MAX_WIDTH - most :][used] = stream
    values = np.packbits(slots, axis=1).view(">u4")[:, 0]  # (rows*c)
    return values.astype(np.int64).reshape(rows, len(widths))
