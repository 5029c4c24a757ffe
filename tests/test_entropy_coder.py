"""The range coder of payload codings 1 and 2 (`codec.entropy_coding`), with a synthetic
prefix-dependent entropy model: exact round trips, sizes at the ideal -log2 p, the params
layout, and every mismatch refused by name."""

from __future__ import annotations

import zlib

import constriction
import numpy as np
import pytest

from tokenizers_vis.codec import entropy_coding as ec
from tokenizers_vis.codec.entropy import EntropyModel
from tokenizers_vis.codec.errors import CorruptedError, EntropyMismatchError, EntropyModelError
from tokenizers_vis.codec.format import CODING_MODEL, Header, read_header

TOK = bytes(range(8))


class PrefixModel(EntropyModel):
    """Probabilities that depend on the whole prefix, the sub-ids and the position (a seeded
    hash), so a coder that feeds the model anything but the true prefix decodes wrongly."""

    kind = "test"
    coding = CODING_MODEL

    def __init__(self, vocab_sizes, max_tokens=8, sharpness=3.0, identity=b"tst1", salt=0):
        self.vocab_sizes, self.max_tokens = tuple(vocab_sizes), max_tokens
        self.identity, self.sharpness, self.salt = identity, sharpness, salt
        self.class_names = ("a", "b")
        self.calls: list[tuple[int, int, int]] = []

    def start(self, batch, condition=None):
        return (batch, -1 if condition is None else condition)

    def next_probabilities(self, state, prefix, sub_ids):
        b, t, _ = prefix.shape
        j = sub_ids.shape[1]
        self.calls.append((b, t, j))
        weights = np.arange(1, t * prefix.shape[2] + 1).reshape(t, prefix.shape[2])  # (t g)
        keys = (prefix * weights).sum(axis=(1, 2)) * 7919 + sub_ids.sum(axis=1) * 104729
        rows = []
        for key in keys:
            seed = [int(key) % 2**31, t, j, state[1] + 1, self.salt]
            z = np.random.default_rng(seed).normal(size=self.vocab_sizes[j])
            rows.append(np.exp(self.sharpness * z).astype(np.float32))
        return np.stack(rows)  # (b V_j)


def sample(model: PrefixModel, lengths, seed=0) -> np.ndarray:
    """Ids (T, max k, g) drawn from the model itself (realistic costs), zero past each k."""
    rng = np.random.default_rng(seed)
    g = len(model.vocab_sizes)
    ids = np.zeros((len(lengths), max(lengths), g), dtype=np.int64)
    for i, k in enumerate(lengths):
        for t in range(k):
            for j in range(g):
                p = model.next_probabilities((1, -1), ids[i : i + 1, :t], ids[i : i + 1, t, :j])
                p = p[0].astype(np.float64)
                ids[i, t, j] = rng.choice(len(p), p=p / p.sum())
    return ids


CASES = {  # vocab sizes, tile lengths, group
    "one tile": ((4096,), [8], 64),
    "tiles of mixed k in groups": ((300,), [3, 8, 1, 5, 8], 2),
    "factorized g = 3": ((7, 5, 3), [8, 2, 6], 64),
    "binary": ((2,), [8, 8, 8, 8], 3),
}


@pytest.mark.parametrize("case", CASES)
def test_round_trip_is_exact_and_size_is_the_ideal_cost(case):
    vocab, lengths, group = CASES[case]
    model = PrefixModel(vocab)
    ids, lengths = sample(model, lengths), np.array(lengths)
    payload, bits = ec.encode_ids(model, ids, lengths, group)
    assert np.array_equal(ec.decode_ids(model, payload, lengths, group), ids)
    assert -2 <= len(payload) - bits / 8 <= 2, (len(payload), bits / 8)


def test_the_shortened_final_word_decodes_for_many_streams():
    """The seal is rewritten by hand (`_sealed_bytes`): check it against hundreds of streams,
    and that it never costs more than constriction's own seal."""
    rng = np.random.default_rng(1)
    family = constriction.stream.model.Categorical(perfect=False)
    saved = 0
    for _ in range(300):
        n, v = int(rng.integers(1, 40)), int(rng.integers(2, 500))
        p = np.exp(rng.uniform(0, 6) * rng.normal(size=(n, v))).astype(np.float32)  # (n v)
        symbols = np.array([rng.choice(v, p=r / r.sum()) for r in p.astype(np.float64)])
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(symbols.astype(np.int32), family, p)
        data = ec._sealed_bytes(encoder)
        saved += 4 * encoder.num_words() - len(data)
        padded = data + b"\0" * (-len(data) % 4)
        decoder = constriction.stream.queue.RangeDecoder(
            np.frombuffer(padded, ">u4").astype(np.uint32)
        )
        assert np.array_equal(decoder.decode(family, p), symbols)
    assert saved >= 300  # ~2 bytes a stream below constriction's sealed words


def test_each_group_is_one_batch_and_the_decoder_asks_the_same_questions():
    model = PrefixModel((11, 4))
    lengths = np.array([2, 5, 1, 4, 3])
    ids = sample(model, lengths)
    model.calls.clear()
    payload, _ = ec.encode_ids(model, ids, lengths, group=2)
    asked = list(model.calls)
    model.calls.clear()
    ec.decode_ids(model, payload, lengths, group=2)
    assert model.calls == asked
    assert {b for b, _, _ in asked} == {2, 1}  # groups of 2 tiles, the last one alone
    assert len(asked) == 2 * (5 + 4 + 3)  # g = 2 calls per position of each group's longest


def _header(lengths, vocab=(300,)) -> Header:
    return Header(TOK, (16 * len(lengths), 16), 16, 8, tuple(vocab), tuple(lengths))


def test_files_round_trip_and_ids_past_k_do_not_matter():
    model = PrefixModel((300,))
    header = _header([3, 8, 1])
    ids = sample(model, header.lengths)
    junk = ids.copy()
    junk[0, 3:] = 7  # e.g. a --target-psnr encode keeps all K ids of a tile
    data = ec.dumps(header, junk, model, group=2, condition=1)
    assert data == ec.dumps(header, ids, model, group=2, condition=1)
    read, payload = read_header(data)
    assert read.coding == CODING_MODEL and read.lengths == header.lengths
    params = ec.EntropyParams.parse(read.coding_params)
    assert (params.model_id, params.group, params.condition) == (b"tst1", 2, 1)
    assert params.ids_crc == ec.ids_checksum(header, ids)
    assert np.array_equal(ec.loads(data, [model], TOK).ids, ids)
    unconditional = ec.dumps(header, ids, model, group=2)
    assert (
        unconditional != data
        and ec.EntropyParams.parse(read_header(unconditional)[0].coding_params).condition is None
    )


def test_params_layout_and_impossible_params():
    params = ec.EntropyParams(b"\x01\x02\x03\x04", 0xDEADBEEF, 300, 0)
    raw = params.to_bytes()
    assert raw == b"\x01\x02\x03\x04" + bytes.fromhex("efbeadde") + b"\xac\x02" + b"\x01"
    assert ec.EntropyParams.parse(raw) == params
    for bad in (raw[:7], raw + b"\x00", raw[:8] + b"\x00\x00", raw[:8] + b"\x80"):
        with pytest.raises(CorruptedError, match="entropy coding params"):
            ec.EntropyParams.parse(bad)


def test_a_missing_or_other_model_is_refused_by_identity():
    model = PrefixModel((300,))
    header = _header([4, 4])
    data = ec.dumps(header, sample(model, header.lengths), model)
    with pytest.raises(EntropyModelError, match="autoregressive model 74737431, which was not"):
        ec.loads(data, [])
    other = PrefixModel((300,), identity=b"oth2")
    with pytest.raises(EntropyModelError, match="not with the test entropy model 6f746832"):
        ec.loads(data, [other])


def test_other_probabilities_fail_the_ids_checksum_never_silently():
    """The same identity but other probabilities (another machine): refused, not garbage."""
    model = PrefixModel((300,))
    header = _header([8, 8, 8])
    data = ec.dumps(header, sample(model, header.lengths), model)
    drifted = PrefixModel((300,), salt=1)  # same identity b"tst1"
    with pytest.raises(EntropyMismatchError, match="fail their checksum"):
        ec.loads(data, [drifted])


def test_a_damaged_payload_with_a_valid_crc_is_refused():
    model = PrefixModel((300,))
    header = _header([8, 8])
    data = bytearray(ec.dumps(header, sample(model, header.lengths), model))
    _, payload = read_header(bytes(data))
    data[-4 - payload // 2] ^= 0x10  # a byte in the middle of the payload
    body = bytes(data[:-4])
    with pytest.raises(EntropyMismatchError, match="checksum"):
        ec.loads(body + zlib.crc32(body).to_bytes(4, "little"), [model])


def test_bad_models_and_arguments_are_refused():
    model = PrefixModel((300,))
    header = _header([8])
    ids = sample(model, header.lengths)
    with pytest.raises(ValueError, match="vocabularies"):
        ec.dumps(header, ids, PrefixModel((299,)))
    with pytest.raises(ValueError, match="at most 4 tokens"):
        ec.dumps(header, ids, PrefixModel((300,), max_tokens=4))
    with pytest.raises(ValueError, match="no class 2"):
        ec.dumps(header, ids, model, condition=2)

    class Wrong(PrefixModel):
        def next_probabilities(self, state, prefix, sub_ids):
            return super().next_probabilities(state, prefix, sub_ids)[:, :-1]

    with pytest.raises(ValueError, match="probabilities of shape"):
        ec.dumps(header, ids, Wrong((300,)))
