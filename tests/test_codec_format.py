"""The .vtok format: exact bytes, sizes by the documented formula, and every way to refuse."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from tokenizers_vis.codec.format import (
    CorruptedError,
    Header,
    NotVtokError,
    TruncatedError,
    UnsupportedError,
    VtokError,
    WrongTokenizerError,
    dumps,
    encode_header,
    loads,
    read_header,
)

ID = bytes(range(8))


def _varint_len(x: int) -> int:
    return max(1, math.ceil(x.bit_length() / 7))


def documented_size(h: Header) -> int:
    """docs/token-format.md's formula, written out independently of the implementation."""
    (w, ht), (cw, ch) = h.size, h.coded_size
    size = 4 + 1 + 1 + 1 + 1 + 8 + _varint_len(w) + _varint_len(ht)
    if (cw, ch) != (w, ht):
        size += _varint_len(cw) + _varint_len(ch)
    size += _varint_len(h.tile_size) + _varint_len(h.max_tokens) + _varint_len(len(h.vocab_sizes))
    size += sum(_varint_len(v) for v in h.vocab_sizes)
    uniform = len(set(h.lengths)) == 1
    size += _varint_len(h.lengths[0] if uniform else 0)
    if not uniform:
        size += math.ceil(len(h.lengths) * math.ceil(math.log2(h.max_tokens)) / 8)
    bits = sum(math.ceil(math.log2(v)) if v > 1 else 0 for v in h.vocab_sizes)
    return size + math.ceil(sum(h.lengths) * bits / 8) + 4


def _file(header: Header, seed: int = 0) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = max(header.lengths)
    ids = np.stack(
        [rng.integers(0, v, (header.num_tiles, n)) for v in header.vocab_sizes], axis=-1
    )  # (T n g)
    return dumps(header, ids), ids


def test_golden_bytes_of_the_documented_example():
    header = Header(ID, (32, 32), 32, 64, (4096,), (64,))
    head = encode_header(header)
    assert head.hex() == "56544f4b01000000" + ID.hex() + "2020204001802040"
    assert len(head) == 24
    data, _ = _file(header)
    assert len(data) == 24 + 96 + 4 == documented_size(header)
    assert int.from_bytes(data[-4:], "little") == zlib.crc32(data[:-4])


HEADERS = {
    "uniform": Header(ID, (640, 427), 32, 64, (4096,), (16,) * 280),
    "per_tile": Header(ID, (20, 300), 16, 8, (125,), tuple(1 + i % 8 for i in range(38))),
    "resampled": Header(ID, (5000, 3), 32, 64, (64_000,), (64,), coded_size=(32, 32)),
    "grouped": Header(ID, (33, 17), 16, 256, (4096, 5, 64_000), (3, 256, 1, 100, 7, 9)),
    "one_token": Header(ID, (1, 1), 1, 1, (2,), (1,)),
}


@pytest.mark.parametrize("name", list(HEADERS))
def test_round_trip_at_the_documented_size(name):
    header = HEADERS[name]
    data, ids = _file(header)
    assert len(data) == documented_size(header)
    parsed = loads(data, tokenizer_id=ID)
    assert parsed.header == header
    for t, k in enumerate(header.lengths):
        np.testing.assert_array_equal(parsed.ids[t, :k], ids[t, :k])
        assert not parsed.ids[t, k:].any()
    assert read_header(data) == (header, header.payload_bytes)


def test_every_truncation_is_named_truncated():
    data, _ = _file(HEADERS["per_tile"])
    for cut in range(len(data)):
        with pytest.raises(TruncatedError, match="truncated"):
            loads(data[:cut])


def test_every_single_byte_corruption_is_refused():
    data, _ = _file(HEADERS["grouped"])
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(VtokError) as err:
            loads(bytes(bad))
        if pos >= 6:  # past magic and version, a flipped byte reads as damage
            assert isinstance(err.value, CorruptedError | TruncatedError), (pos, err.value)


def test_trailing_bytes_are_corruption():
    data, _ = _file(HEADERS["uniform"])
    body = data[:-4] + b"\x00"
    with pytest.raises(CorruptedError, match="implies"):
        loads(body + zlib.crc32(body).to_bytes(4, "little"))


def _reseal(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_unknown_version_coding_and_layout_are_refused_by_name():
    data, _ = _file(HEADERS["uniform"])
    with pytest.raises(NotVtokError, match="not a .vtok file"):
        loads(b"\x89PNG" + data[4:])
    with pytest.raises(UnsupportedError, match="format version 2"):
        loads(_reseal(data[:4] + b"\x02" + data[5:-4]))
    coded = _reseal(data[:5] + b"\x01" + data[6:-4])
    assert read_header(coded)[0].coding == 1  # the header stays readable (vistok info)
    with pytest.raises(UnsupportedError, match=r"payload coding 1 \(entropy coded"):
        loads(coded)
    with pytest.raises(UnsupportedError, match="layout 7"):
        loads(_reseal(data[:7] + b"\x07" + data[8:-4]))


def test_wrong_tokenizer_is_refused():
    data, _ = _file(HEADERS["uniform"])
    with pytest.raises(WrongTokenizerError, match="written by tokenizer 0001020304050607"):
        loads(data, tokenizer_id=b"\xff" * 8)


def test_impossible_headers_and_ids_are_rejected_on_write():
    with pytest.raises(CorruptedError, match="tile lengths"):
        Header(ID, (64, 64), 32, 64, (4096,), (64,))  # 4 tiles, 1 length
    with pytest.raises(CorruptedError, match="outside 1..64"):
        Header(ID, (32, 32), 32, 64, (4096,), (65,))
    header = HEADERS["one_token"]
    with pytest.raises(ValueError, match="out of range"):
        dumps(header, np.array([[[2]]]))


def test_the_one_varint_reader_round_trips_and_names_its_failures():
    from tokenizers_vis.codec.entropy_coding import EntropyParams
    from tokenizers_vis.codec.format import encode_varint, read_varint

    for value in (0, 1, 127, 128, 300, 2**14, 2**35 - 1):
        data = b"\x07" + encode_varint(value) + b"\x09"
        assert read_varint(data, 1, "x") == (value, len(data) - 1)
    with pytest.raises(TruncatedError, match=r"ends inside the header \(width\)"):
        read_varint(encode_varint(300)[:1], 0, "width")
    with pytest.raises(CorruptedError, match="width is not a valid varint"):
        read_varint(b"\x80" * 5 + b"\x01", 0, "width")
    params = EntropyParams(b"abcd", 7, group=300, condition=2)
    assert EntropyParams.parse(params.to_bytes()) == params
    with pytest.raises(CorruptedError, match="params end inside a varint"):
        EntropyParams.parse(params.to_bytes()[:-2])  # within a file, so not a truncation


def test_ids_past_the_vocabulary_in_their_bit_field_are_corruption():
    # 125 needs 7 bits, which also hold 125..127: ids only damage can make (CRC recomputed).
    from tokenizers_vis.codec.format import dumps_payload

    header = Header(ID, (16, 16), 16, 8, (125,), (8,))
    data = dumps_payload(header, b"\xff" * header.payload_bytes)
    with pytest.raises(CorruptedError, match="out of range"):
        loads(data)
