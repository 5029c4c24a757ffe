"""The `.vtok` token file: header, bit-packed ids, checksum. The full spec: docs/token-format.md.

    "VTOK" | version | coding | coding params | layout | tokenizer id | sizes | tile size | K |
    vocabulary sizes | k | [per-tile k] | payload | CRC-32

Integers are unsigned LEB128 varints unless the spec says otherwise, so a 32x32 image at
k = 64 with the shipped model is a 24-byte header + 96-byte payload + 4-byte checksum.
`coding` says how the payload codes the ids (0 = bit-packed, `bitpack.py`; 1 and 2 = range coded
with an entropy model, `entropy_coding.py`); every coding keeps the header and the trailing
CRC-32, so a reader can always show the header and check the file. Readers refuse versions,
codings and layouts they do not know, naming them.

This module needs only numpy and the standard library (no torch), so it is the reference reader.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tokenizers_vis.codec import bitpack
from tokenizers_vis.codec.errors import (
    CorruptedError,
    NotVtokError,
    TruncatedError,
    UnsupportedError,
    VtokError,
    WrongTokenizerError,
)
from tokenizers_vis.limits import DEFAULT_LIMITS, LimitError, Limits, check_limit

__all__ = [
    "CODINGS",
    "FORMAT_VERSION",
    "MAGIC",
    "CorruptedError",
    "Header",
    "NotVtokError",
    "TokenFile",
    "TruncatedError",
    "UnsupportedError",
    "VtokError",
    "WrongTokenizerError",
    "check_pixels",
    "range_floor_bits",
    "dumps",
    "dumps_payload",
    "loads",
    "read_header",
    "read_payload",
    "scatter_ids",
    "stored_rows",
    "unpack_ids",
]

MAGIC = b"VTOK"
FORMAT_VERSION = 1
ID_BYTES = 8
CRC_BYTES = 4
CODING_BITPACK, CODING_STATIC, CODING_MODEL = 0, 1, 2
# The payload codings this reader knows. 1 and 2 need an entropy model to decode
# (`codec.entropy`): a context-free table, or a model of the prefix such as the GPT.
CODINGS = {
    CODING_BITPACK: "bit-packed",
    CODING_STATIC: "entropy coded: static table",
    CODING_MODEL: "entropy coded: autoregressive model",
}
LAYOUT_TILE, LAYOUT_RESAMPLED = 0, 1
LAYOUTS = {LAYOUT_TILE: "tile", LAYOUT_RESAMPLED: "resampled"}
MAX_SIDE = 1 << 24  # a sanity bound that tells a corrupted size from a real one
MAX_SUBCODEBOOKS = 255
MAX_TILES = 1 << 22  # 4M tiles: a 32k x 32k image in 16-pixel tiles
# The range coder of codings 1 and 2 quantises every probability to 24 bits and gives every
# symbol at least one unit, so no symbol of a vocabulary of V costs fewer than
# -log2(1 - (V - 1) 2^-24) bits, whatever the model: a floor on what a payload must hold.
RANGE_PRECISION = 24
# Bits a range decoder may take past the payload's last byte: its 64-bit state window, plus
# as much again for the shortened final word. An honest payload never needs more (the writer
# keeps zero bytes that would be needed, `entropy_coding._sealed_bytes`).
RANGE_LOOKAHEAD_BITS = 128


@dataclass(frozen=True)
class Header:
    """Everything before the payload.

    Attributes:
        tokenizer_id: 8 bytes identifying the tokenizer (see `codec.identity`).
        size: the original image's (width, height).
        tile_size: S, the tokenizer's square input size.
        max_tokens: K, the tokenizer's longest sequence.
        vocab_sizes: one vocabulary size per sub-codebook (g of them).
        lengths: k of every tile, row-major over the tile grid.
        coded_size: (width, height) of the canvas that was tiled; `size` for the tile layout,
            otherwise the image was resampled to it (decoding resamples back to `size`).
        coding: payload coding (0 = bit-packed).
        coding_params: bytes a coding needs (empty for bit-packed).
        version: format version.
    """

    tokenizer_id: bytes
    size: tuple[int, int]
    tile_size: int
    max_tokens: int
    vocab_sizes: tuple[int, ...]
    lengths: tuple[int, ...]
    coded_size: tuple[int, int] | None = None
    coding: int = CODING_BITPACK
    coding_params: bytes = field(default=b"", repr=False)
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.coded_size is None:
            object.__setattr__(self, "coded_size", tuple(self.size))
        self.validate()

    @property
    def layout(self) -> int:
        return LAYOUT_TILE if self.coded_size == self.size else LAYOUT_RESAMPLED

    @property
    def grid(self) -> tuple[int, int]:
        """(columns, rows) of tiles covering the coded canvas."""
        (w, h), s = self.coded_size, self.tile_size
        return -(-w // s), -(-h // s)

    @property
    def num_tiles(self) -> int:
        cols, rows = self.grid
        return cols * rows

    @property
    def uniform_k(self) -> int | None:
        """k when every tile has the same length, else None (lengths are then stored)."""
        return self.lengths[0] if len(set(self.lengths)) == 1 else None

    @property
    def bits_per_token(self) -> int:
        return sum(bitpack.bit_widths(self.vocab_sizes))

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def canvas_pixels(self) -> int:
        """Pixels of the decoded tile canvas (the grid of whole tiles, before cropping)."""
        cols, rows = self.grid
        return cols * rows * self.tile_size * self.tile_size

    @property
    def payload_bytes(self) -> int:
        """Bytes of a bit-packed payload: `ceil(sum_t k_t * sum_g ceil(log2 V_g) / 8)`."""
        return bitpack.packed_bytes(self.num_tokens, bitpack.bit_widths(self.vocab_sizes))

    def validate(self) -> None:
        """Raise CorruptedError for field values no writer produces."""
        problems = []
        if len(self.tokenizer_id) != ID_BYTES:
            problems.append(f"tokenizer id must be {ID_BYTES} bytes")
        for name, (w, h) in (("size", self.size), ("coded size", self.coded_size)):
            if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
                problems.append(f"{name} {w}x{h} outside 1..{MAX_SIDE}")
        if not 1 <= self.tile_size <= MAX_SIDE:
            problems.append(f"tile size {self.tile_size}")
        if not 1 <= self.max_tokens <= 1 << 20:
            problems.append(f"max tokens {self.max_tokens}")
        if not 1 <= len(self.vocab_sizes) <= MAX_SUBCODEBOOKS:
            problems.append(f"{len(self.vocab_sizes)} sub-codebooks")
        if any(not 1 <= v <= 1 << bitpack.MAX_WIDTH for v in self.vocab_sizes):
            problems.append(f"vocabulary sizes {self.vocab_sizes}")
        if not problems and self.num_tiles > MAX_TILES:
            problems.append(f"{self.num_tiles} tiles (at most {MAX_TILES})")
        if not problems and len(self.lengths) != self.num_tiles:
            problems.append(f"{len(self.lengths)} tile lengths for {self.num_tiles} tiles")
        if self.lengths and not 1 <= min(self.lengths) <= max(self.lengths) <= self.max_tokens:
            problems.append(f"a tile length outside 1..{self.max_tokens}")
        if problems:
            raise CorruptedError("impossible header: " + "; ".join(problems))


@dataclass(frozen=True)
class TokenFile:
    """A parsed .vtok file.

    Attributes:
        header: the header.
        ids: (T, n, g) int64, tile t's ids in `ids[t, :header.lengths[t]]`, zero after it;
            n = max k.
    """

    header: Header
    ids: np.ndarray


# Every varint field fits in 35 bits: 5 bytes at most.
VARINT_MAX_BYTES = 5


def encode_varint(value: int) -> bytes:
    """An unsigned LEB128 varint: 7 bits a byte, least significant first, high bit = more."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data: bytes | memoryview, pos: int, what: str) -> tuple[int, int]:
    """The varint at `data[pos:]` (at most `VARINT_MAX_BYTES` bytes): (value, position after it).

    Raises:
        TruncatedError: the data ends inside it.
        CorruptedError: it runs longer than `VARINT_MAX_BYTES` bytes.
    """
    value = 0
    for shift in range(0, 7 * VARINT_MAX_BYTES, 7):
        if pos >= len(data):
            raise TruncatedError(f"truncated: the file ends inside the header ({what})")
        byte, pos = data[pos], pos + 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise CorruptedError(f"corrupted header: {what} is not a valid varint")


class _Reader:
    """Reads header fields, raising TruncatedError at the end of the data."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise TruncatedError(f"truncated: the file ends inside the header ({what})")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        value, self.pos = read_varint(self.data, self.pos, what)
        return value


def _lengths_block(lengths: Sequence[int], max_tokens: int) -> bytes:
    width = bitpack.bit_width(max_tokens)
    values = np.asarray(lengths, dtype=np.int64)[:, None] - 1  # (T 1) k - 1
    return bitpack.pack(values, [width])


def encode_header(header: Header) -> bytes:
    """The header's bytes (everything before the payload)."""
    (w, h), (cw, ch) = header.size, header.coded_size
    parts = [MAGIC, bytes([header.version, header.coding])]
    parts += [encode_varint(len(header.coding_params)), header.coding_params]
    parts += [bytes([header.layout]), header.tokenizer_id, encode_varint(w), encode_varint(h)]
    if header.layout == LAYOUT_RESAMPLED:
        parts += [encode_varint(cw), encode_varint(ch)]
    parts += [encode_varint(header.tile_size), encode_varint(header.max_tokens)]
    parts += [encode_varint(len(header.vocab_sizes)), *map(encode_varint, header.vocab_sizes)]
    k = header.uniform_k
    parts.append(encode_varint(k or 0))
    if k is None:
        parts.append(_lengths_block(header.lengths, header.max_tokens))
    return b"".join(parts)


def check_pixels(
    size: tuple[int, int],
    canvas: tuple[int, int],
    tile_size: int,
    limits: Limits = DEFAULT_LIMITS,
    source: object = "token file",
) -> None:
    """Refuse (`LimitError`) an image whose decoding would make more than `limits.max_pixels`
    pixels: the output image (`size`), or the canvas of whole tiles it is decoded on.

    Warns (`LimitWarning`) above `limits.warn_pixels`, as Pillow does.
    """
    cols, rows = -(-canvas[0] // tile_size), -(-canvas[1] // tile_size)
    output, tiles = size[0] * size[1], cols * rows * tile_size * tile_size
    what = "output pixels" if output >= tiles else "pixels of the decoded tile canvas"
    check_limit(source, what, max(output, tiles), limits, "max_pixels")


def _decode_header(
    data: bytes | memoryview, limits: Limits | None = None, source: object = "token file"
) -> tuple[Header, int]:
    """Parse the header at the start of `data`; returns it and the payload's offset.

    With `limits`, an image too large to decode is refused (`check_pixels`) before the tile
    lengths are read, so a few bytes cannot make the parser build a huge header.
    """
    r = _Reader(data)
    magic = r.take(len(MAGIC), "magic")
    if magic != MAGIC:
        raise NotVtokError(f"not a .vtok file (it starts with {magic!r}, not {MAGIC!r})")
    version = r.u8("version")
    if version != FORMAT_VERSION:
        raise UnsupportedError(
            f"format version {version} is not supported (this vistok reads {FORMAT_VERSION})"
        )
    coding = r.u8("coding")
    params = r.take(r.varint("coding params"), "coding params")
    layout = r.u8("layout")
    if layout not in LAYOUTS:
        raise UnsupportedError(f"layout {layout} is unknown to this vistok (knows {LAYOUTS})")
    tokenizer_id = r.take(ID_BYTES, "tokenizer id")
    size = (r.varint("width"), r.varint("height"))
    coded = (r.varint("coded width"), r.varint("coded height")) if layout else size
    tile_size, max_tokens = r.varint("tile size"), r.varint("max tokens")
    g = r.varint("sub-codebooks")
    if not 1 <= g <= MAX_SUBCODEBOOKS:
        raise CorruptedError(f"corrupted header: {g} sub-codebooks")
    vocab = tuple(r.varint("vocabulary size") for _ in range(g))
    k = r.varint("k")
    if not 1 <= tile_size <= MAX_SIDE or not all(1 <= s <= MAX_SIDE for s in (*size, *coded)):
        raise CorruptedError(f"corrupted header: sizes {size}, {coded}, tile {tile_size}")
    num_tiles = -(-coded[0] // tile_size) * -(-coded[1] // tile_size)
    if num_tiles > MAX_TILES:
        raise CorruptedError(f"corrupted header: {num_tiles} tiles (at most {MAX_TILES})")
    if limits is not None:
        check_pixels(size, coded, tile_size, limits, source)
    if k:
        lengths = (k,) * num_tiles
    else:
        width = bitpack.bit_width(max(max_tokens, 1))
        block = r.take(bitpack.packed_bytes(num_tiles, [width]), "tile lengths")
        lengths = tuple(int(v) + 1 for v in bitpack.unpack(block, num_tiles, [width])[:, 0])
    header = Header(
        tokenizer_id, size, tile_size, max_tokens, vocab, lengths, coded, coding, params, version
    )
    return header, r.pos


def stored_rows(header: Header, ids: np.ndarray) -> np.ndarray:
    """The ids a file stores, in stream order: (sum_t k_t, g), tile-major, then token order.

    Args:
        header: its `lengths` say how many ids of each tile are stored.
        ids: (T, n, g) integer array, n >= every tile's k; ids past a tile's k are ignored.

    Raises:
        ValueError: a wrong shape, or ids outside the vocabularies.
    """
    ids = np.asarray(ids)
    t, g = header.num_tiles, len(header.vocab_sizes)
    if ids.ndim != 3 or ids.shape[0] != t or ids.shape[2] != g:
        raise ValueError(f"ids must be ({t}, n, {g}), got {ids.shape}")
    lengths = np.asarray(header.lengths)
    if ids.shape[1] < lengths.max():
        raise ValueError(f"ids hold {ids.shape[1]} tokens per tile, a tile needs {lengths.max()}")
    rows = ids[np.arange(ids.shape[1])[None, :] < lengths[:, None]]  # (sum k, g)
    if (rows < 0).any() or (rows >= np.asarray(header.vocab_sizes)).any():
        raise ValueError(f"ids out of range for vocabulary sizes {header.vocab_sizes}")
    return rows


def scatter_ids(header: Header, rows: np.ndarray) -> np.ndarray:
    """Inverse of `stored_rows`: (sum_t k_t, g) -> (T, n, g) int64, zero past each k."""
    lengths = np.asarray(header.lengths)
    ids = np.zeros((header.num_tiles, int(lengths.max()), rows.shape[1]), dtype=np.int64)
    ids[np.arange(ids.shape[1])[None, :] < lengths[:, None]] = rows  # (T n g)
    return ids


def dumps(header: Header, ids: np.ndarray) -> bytes:
    """Write a bit-packed .vtok file (coding 0) of ids (T, n, g); returns its bytes."""
    if header.coding != CODING_BITPACK:
        raise UnsupportedError("dumps writes coding 0; entropy codings: `entropy_coding.dumps`")
    widths = bitpack.bit_widths(header.vocab_sizes)
    return dumps_payload(header, bitpack.pack(stored_rows(header, ids), widths))


def dumps_payload(header: Header, payload: bytes) -> bytes:
    """A whole file from its header and an already coded payload: header | payload | CRC-32."""
    body = encode_header(header) + payload
    return body + zlib.crc32(body).to_bytes(CRC_BYTES, "little")


def _parse(data: memoryview, limits: Limits | None, source: object) -> tuple[Header, int]:
    """`_decode_header`, with any impossible value reported as corruption."""
    try:
        return _decode_header(data, limits, source)
    except (VtokError, LimitError):
        raise
    except (ValueError, OverflowError) as err:
        raise CorruptedError(f"corrupted header: {err}") from None


def _checked(
    data: bytes | memoryview, limits: Limits | None = None, source: object = "token file"
) -> tuple[Header, int]:
    """Header and payload offset of a complete file whose checksum matches.

    The checksum decides between "truncated" and "corrupted": a file whose checksum matches is
    intact, so its header is trusted; otherwise a header that parses and describes more bytes
    than there are means truncated, anything else corrupted. An intact header that asks for
    more than `limits` allow is a `LimitError`; a damaged one is reported as damaged.
    """
    data = memoryview(data)
    intact = len(data) > CRC_BYTES and zlib.crc32(data[:-CRC_BYTES]) == int.from_bytes(
        data[-CRC_BYTES:], "little"
    )
    try:
        header, offset = _parse(data, limits, source)  # magic and version first, whatever the CRC
    except (TruncatedError, CorruptedError) as err:
        if intact:
            raise CorruptedError(f"corrupted: {err}") from None
        raise
    except LimitError:
        if intact:
            raise
        raise CorruptedError("corrupted: the checksum does not match the contents") from None
    except UnsupportedError:
        if intact or data[len(MAGIC)] != FORMAT_VERSION:
            raise
        raise CorruptedError("corrupted: the checksum does not match the contents") from None
    expected = offset + header.payload_bytes + CRC_BYTES if header.coding == 0 else None
    if not intact:
        if len(data) < (expected or offset + CRC_BYTES):
            raise TruncatedError(f"truncated: {len(data)} of {expected or 'more'} bytes")
        raise CorruptedError("corrupted: the checksum does not match the contents")
    if expected is not None and len(data) != expected:
        raise CorruptedError(f"corrupted: {len(data)} bytes where the header implies {expected}")
    if header.coding in (CODING_STATIC, CODING_MODEL):
        _check_coded_size(header, len(data) - offset - CRC_BYTES)
    return header, offset


def range_floor_bits(vocab_sizes: Sequence[int]) -> np.ndarray:
    """(g,) the fewest bits the range coder of codings 1 and 2 spends on a sub-id of each
    vocabulary, whatever the model's probabilities (see `RANGE_PRECISION`)."""
    v = np.asarray(vocab_sizes, dtype=np.float64)
    return -np.log2(1.0 - (v - 1) * 2.0**-RANGE_PRECISION)


def _check_coded_size(header: Header, payload_bytes: int) -> None:
    """Refuse an entropy-coded file whose payload cannot hold the ids its header claims, even
    at the coder's smallest cost per id (the model may bound it tighter, `decode_payload`)."""
    need = header.num_tokens * float(range_floor_bits(header.vocab_sizes).sum())
    if need > 8 * payload_bytes + RANGE_LOOKAHEAD_BITS:
        raise CorruptedError(
            f"corrupted: a {payload_bytes}-byte payload cannot hold the {header.num_tokens:,} "
            f"tokens of {header.num_tiles:,} tiles the header claims (at least {need:,.0f} bits)"
        )


def read_header(
    data: bytes | memoryview, limits: Limits | None = None, source: object = "token file"
) -> tuple[Header, int]:
    """Parse and check a file's header: (header, payload size in bytes).

    Works for every coding, known or not (the checksum is always the last 4 bytes).

    Args:
        data: the file's bytes.
        limits: when given, refuse images larger than they allow (`check_pixels`); None: only
            the header is read, so no image size is refused.
        source: the file's name in a refusal.

    Raises:
        VtokError: not a .vtok file, truncated, corrupted or from a newer format version.
        LimitError: with `limits`, the image is larger than they allow.
    """
    header, offset = _checked(data, limits, source)
    return header, len(data) - offset - CRC_BYTES


def read_payload(
    data: bytes | memoryview,
    tokenizer_id: bytes | None = None,
    limits: Limits | None = None,
    source: object = "token file",
) -> tuple[Header, memoryview]:
    """Parse and check a file of a known coding, before decoding it: (header, payload bytes).

    Args:
        data: the file's bytes.
        tokenizer_id: when given, refuse files written by another tokenizer.
        limits: what decoding may cost (None: `DEFAULT_LIMITS`); an image larger than they
            allow is refused from the header.
        source: the file's name in a refusal.

    Raises:
        VtokError: with a one-line reason (see the subclasses).
        LimitError: the image is larger than `limits` allow.
    """
    header, offset = _checked(data, limits or DEFAULT_LIMITS, source)
    if header.coding not in CODINGS:
        raise UnsupportedError(
            f"payload coding {header.coding} (unknown) is not supported by this vistok "
            f"(it reads {', '.join(f'{c} = {n}' for c, n in CODINGS.items())})"
        )
    if tokenizer_id is not None and header.tokenizer_id != tokenizer_id:
        raise WrongTokenizerError(
            f"written by tokenizer {header.tokenizer_id.hex()}, not by this one "
            f"({tokenizer_id.hex()}): decode it with the model that encoded it"
        )
    return header, memoryview(data)[offset : len(data) - CRC_BYTES]


def loads(
    data: bytes | memoryview, tokenizer_id: bytes | None = None, limits: Limits | None = None
) -> TokenFile:
    """`read_payload` and unpack a bit-packed file (entropy-coded ones need their model:
    `Codec.read` or `entropy_coding.loads`). Raises VtokError with a one-line reason, or
    LimitError for an image larger than `limits` (None: `DEFAULT_LIMITS`) allow."""
    header, payload = read_payload(data, tokenizer_id, limits)
    if header.coding != CODING_BITPACK:
        raise UnsupportedError(
            f"payload coding {header.coding} ({CODINGS[header.coding]}) needs its entropy "
            "model to decode: read it with a Codec given that model"
        )
    return TokenFile(header, unpack_ids(header, payload))


def unpack_ids(header: Header, payload: bytes | memoryview) -> np.ndarray:
    """A coding-0 payload -> ids (T, n, g) int64, zero past each tile's k."""
    rows = bitpack.unpack(payload, header.num_tokens, bitpack.bit_widths(header.vocab_sizes))
    # A b-bit field holds up to 2^b - 1, more than a vocabulary that is not a power of two:
    # such an id can only come from damage (the CRC was recomputed or collided).
    if rows.size and bool((rows >= np.asarray(header.vocab_sizes)).any()):
        raise CorruptedError(
            f"corrupted: token ids out of range for vocab sizes {header.vocab_sizes}"
        )
    return scatter_ids(header, rows)  # (T n g)
