"""Bit-packing round-trips exactly, at exactly ceil(rows * sum(ceil(log2 V)) / 8) bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenizers_vis.codec.bitpack import bit_width, bit_widths, pack, packed_bytes, unpack


def test_every_vocabulary_size_up_to_2_16_round_trips():
    # One sub-codebook per vocabulary size 1..65536: a single pack exercises every width, every
    # column boundary and every size's largest id (row 0), next to random ids (rows 1-3).
    sizes = np.arange(1, 2**16 + 1, dtype=np.int64)
    rng = np.random.default_rng(0)
    ids = np.stack([sizes - 1, *(rng.integers(0, sizes) for _ in range(3))])  # (4, 65536)
    widths = bit_widths(sizes.tolist())
    assert widths == tuple(math.ceil(math.log2(v)) if v > 1 else 0 for v in sizes.tolist())
    data = pack(ids, widths)
    assert len(data) == math.ceil(4 * sum(widths) / 8) == packed_bytes(4, widths)
    np.testing.assert_array_equal(unpack(data, 4, widths), ids)


@pytest.mark.parametrize(
    ("vocab_sizes", "bits"),
    [
        ((64_000,), 16),  # FSQ 8,8,8,5,5,5
        ((4096,), 12),  # the shipped model
        ((125,), 7),
        ((2,), 1),
        ((1,), 0),
        ((4096, 64_000, 5, 1), 12 + 16 + 3),  # g > 1, mixed widths
        ((2**32,), 32),
    ],
)
def test_round_trip_and_size(vocab_sizes, bits):
    rng = np.random.default_rng(1)
    rows = 257  # not a multiple of 8: the stream ends mid-byte
    ids = np.stack([rng.integers(0, v, rows) for v in vocab_sizes], axis=1)  # (rows, g)
    ids[0] = np.asarray(vocab_sizes) - 1
    widths = bit_widths(vocab_sizes)
    assert sum(widths) == bits
    data = pack(ids, widths)
    assert len(data) == (rows * bits + 7) // 8
    np.testing.assert_array_equal(unpack(data, rows, widths), ids)


def test_a_prefix_of_tokens_is_a_prefix_of_bits():
    rng = np.random.default_rng(2)
    widths = bit_widths((4096, 5))
    ids = np.stack([rng.integers(0, 4096, 16), rng.integers(0, 5, 16)], axis=1)
    full = pack(ids, widths)
    for k in (1, 3, 8):
        prefix = pack(ids[:k], widths)
        whole_bytes = k * sum(widths) // 8
        assert full[:whole_bytes] == prefix[:whole_bytes]
        np.testing.assert_array_equal(unpack(full, k, widths), ids[:k])


def test_bit_width_edges():
    assert [bit_width(v) for v in (1, 2, 3, 4, 5, 4096, 4097, 65_536, 65_537)] == [
        0, 1, 2, 2, 3, 12, 13, 16, 17,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="at least 1"):
        bit_width(0)
    with pytest.raises(ValueError, match="at most 32"):
        bit_width(2**32 + 1)


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="needs > 3 bits"):
        pack(np.array([[8]]), [3])
    with pytest.raises(ValueError, match="non-negative"):
        pack(np.array([[-1]]), [3])
    with pytest.raises(ValueError, match="need 2 bytes"):
        unpack(b"\x00", 2, [5])
