"""Hostile token files cost nothing (issue 22): each refusal comes from the header or from the
payload's size, before the work or the allocation the file asks for; honest large files decode
in batches into one image. Every hostile file is built here, a few dozen bytes each."""

from __future__ import annotations

import time
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import tokenizers_vis as tv
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.codec import Codec, StaticTable
from tokenizers_vis.codec import entropy_coding as ec
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.errors import CorruptedError
from tokenizers_vis.codec.layout import tiles_to_image
from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import DEFAULT_LIMITS, LimitError, Limits, LimitWarning

S, K, V = 16, 8, 125  # the tiny_cpu_fsq tokenizer


@pytest.fixture(scope="module")
def codec() -> Codec:
    torch.manual_seed(0)
    return Codec(tv.create_tokenizer("tiny_cpu_fsq"), device="cpu", batch_size=16)


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


@pytest.fixture
def no_work(monkeypatch, codec):
    """Fail the test if anything decodes a tile or resamples an image."""

    def reached(*_a, **_k):
        raise AssertionError("work was done for a file that should have been refused")

    monkeypatch.setattr(Image.Image, "resize", reached)
    monkeypatch.setattr(codec.tokenizer, "decode", reached)


def header(identity, size, coded=None, k=1, coding=0, params=b"", tile=S) -> fmt.Header:
    canvas = coded or size
    tiles = -(-canvas[0] // tile) * -(-canvas[1] // tile)
    return fmt.Header(identity, size, tile, K, (V,), (k,) * tiles, coded, coding, params)


def bitpacked(h: fmt.Header) -> bytes:
    return fmt.dumps_payload(h, bytes(h.payload_bytes))


@pytest.mark.parametrize(
    "size",
    [(16_777_216, 64), (30_000, 30_000), (1 << 24, 1 << 24)],
    ids=["16M x 64", "30k", "2^24"],
)
def test_resampled_bombs_are_refused_from_the_header(codec, no_work, size):
    data = bitpacked(header(codec.identity, size, (S, S)))  # one tile, resampled to `size`
    assert len(data) <= 40
    tracemalloc.start()
    with pytest.raises(LimitError) as err:
        codec.decode_bytes(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20  # nothing proportional to the claimed image
    message = str(err.value)
    assert "output pixels" in message and "max_pixels" in message and "--max-pixels" in message
    assert len(message.splitlines()) == 1 and isinstance(err.value, VistokError)


def test_the_pixel_limit_is_raised_explicitly_and_warns_above_half(codec):
    data = bitpacked(header(codec.identity, (40, 30), (S, S)))
    small = DEFAULT_LIMITS.replace(max_pixels=1_000, warn_pixels=500)
    with pytest.raises(LimitError, match="token file: output pixels 1,200 exceed"):
        codec.decode_bytes(data, limits=small)
    with pytest.raises(LimitError, match="a.vtok: output pixels"):
        codec.read(data, limits=small, source="a.vtok")
    with pytest.warns(LimitWarning, match="decompression bomb"):
        image = codec.decode_bytes(data, limits=small.replace(max_pixels=2_000))
    assert image.size == (40, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert codec.decode_bytes(data).size == (40, 30)  # the defaults are far above
    # The canvas of whole tiles counts too: one 1 x 1 image in a 2^20-pixel tile.
    with pytest.raises(LimitError, match="pixels of the decoded tile canvas"):
        fmt.check_pixels((1, 1), (1, 1), 1 << 10, DEFAULT_LIMITS.replace(max_pixels=1 << 19))


def test_a_damaged_header_is_damaged_not_a_limit(codec):
    data = bytearray(bitpacked(header(codec.identity, (30_000, 30_000), (S, S))))
    data[-1] ^= 1  # checksum no longer matches
    with pytest.raises(CorruptedError):
        codec.read(bytes(data))


def test_a_bitpacked_file_must_hold_its_bits_and_is_refused_at_parse(codec, no_work):
    h = header(codec.identity, (4096 * S, 1024 * S))  # 4M tiles: 2 bytes of payload
    data = fmt.dumps_payload(h, b"\0\0")
    start = time.perf_counter()
    with pytest.raises(CorruptedError, match="where the header implies"):
        codec.read(data, limits=DEFAULT_LIMITS.replace(max_pixels=1 << 40, warn_pixels=1 << 40))
    assert time.perf_counter() - start < 2.0  # a header, not 4M tiles' work


def static_table(top: float = 0.5) -> StaticTable:
    """A table where id 0 has probability `top` at every position."""
    counts = np.ones((K, V), dtype=np.int64)
    counts[:, 0] = round(top / (1 - top) * (V - 1))
    return StaticTable([counts], tokenizer_id=None)


def test_static_coded_file_claiming_16384_tiles_is_refused_before_decoding(codec, monkeypatch):
    table = static_table(0.9)
    calls = []
    monkeypatch.setattr(table, "next_probabilities", lambda *a: calls.append(a))
    params = ec.EntropyParams(table.identity, 0, 64).to_bytes()
    h = header(codec.identity, (128 * S, 128 * S), k=K, coding=fmt.CODING_STATIC, params=params)
    # The coder's own floor already refuses an empty payload of 4096-value ids, whatever the
    # model (2^-24 quantisation: at least 3.5e-4 bits an id; the 40-byte file).
    wide = fmt.Header(bytes(8), (4096, 4096), 32, 64, (4096,), (64,) * 16_384, None, 1, params)
    with pytest.raises(CorruptedError, match="0-byte payload cannot hold the 1,048,576 tokens"):
        fmt.read_payload(fmt.dumps_payload(wide, b""))
    # 40 bytes pass that floor; the table's own floor (p <= 0.9: 0.15 bits an id) does not.
    data = fmt.dumps_payload(h, bytes(range(1, 41)))
    start = time.perf_counter()
    with pytest.raises(CorruptedError, match="static entropy model .* needs at least"):
        ec.loads(data, [table])
    assert time.perf_counter() - start < 1.0 and not calls


def test_the_range_decoder_refuses_to_read_past_the_payload(monkeypatch):
    from test_entropy_coder import PrefixModel

    model = PrefixModel((4096,), max_tokens=8, sharpness=0.5)  # ~12 bits an id
    asked = []
    real = model.next_probabilities
    monkeypatch.setattr(model, "next_probabilities", lambda *a: asked.append(1) or real(*a))
    lengths = np.full(200, 8)  # 1,600 ids: ~19,000 bits, in a 10-byte payload
    with pytest.raises(CorruptedError, match="decoding read past its end"):
        ec.decode_ids(model, bytes(range(1, 11)), lengths, group=64)
    assert len(asked) <= 8  # refused inside the first group's first positions


def test_the_writer_keeps_the_zero_bytes_an_honest_payload_needs():
    table = static_table(0.5)  # id 0: ~1.6 bits; a run of zeros codes to zero bytes
    lengths = np.full(64, K)
    ids = np.zeros((64, K, 1), dtype=np.int64)
    payload, bits = ec.encode_ids(table, ids, lengths)
    assert bits == pytest.approx(-64 * np.log2(table.probs[0][:, 0]).sum())  # ~800 bits
    assert not payload.strip(b"\0")  # all zeros: dropping them all would break the check
    assert 8 * len(payload) >= bits - fmt.RANGE_LOOKAHEAD_BITS
    np.testing.assert_array_equal(ec.decode_ids(table, payload, lengths), ids)
    # Real ids are never lengthened: the margin is measured in tools/range_slack.py.
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (64, K, 1))
    payload, bits = ec.encode_ids(table, ids, lengths)
    assert len(payload) <= bits / 8 + 2


def test_gpt_coding_group_of_65536_is_refused_before_allocation(monkeypatch):
    from tokenizers_vis.codec.entropy import load_entropy_model

    gpt = load_entropy_model("gpt_emoji")
    monkeypatch.setattr(gpt, "start", lambda *a: pytest.fail("the group was allocated"))
    params = ec.EntropyParams(gpt.identity, 0, 65_536).to_bytes()
    h = fmt.Header(bytes(8), (32, 1 << 21), 32, 64, (4096,), (1,) * 65_536, None, 2, params)
    data = fmt.dumps_payload(h, b"")
    assert len(data) <= 45
    with pytest.raises(LimitError) as err:
        ec.loads(data, [gpt])
    assert "65,536 tiles" in str(err.value) and "--max-memory" in str(err.value)
    assert gpt.work_bytes(65_536) > 12 << 30  # the KV cache alone: 2 x 6 x 65,536 x 64 x 128 x 4
    # The estimate covers what a group really allocates.
    model = load_entropy_model("gpt_emoji")
    with model.session():
        state = model.start(3)
        model.next_probabilities(state, np.zeros((3, 0, 1), np.int64), np.zeros((3, 0), np.int64))
    kv = state.cache.keys.nbytes + state.cache.values.nbytes
    assert kv <= model.work_bytes(3) < 2 * kv


def test_the_encoder_checks_its_group_too():
    table = static_table()
    h = header(bytes(8), (S, S))
    with pytest.raises(LimitError, match="coding group of 1 tiles"):
        ec.dumps(h, np.zeros((1, 1, 1)), table, limits=DEFAULT_LIMITS.replace(max_work_bytes=10))


def test_large_honest_files_stream_in_batches_into_one_image(codec, monkeypatch):
    cols, rows = 40, 30  # 1,200 tiles, last column and row cropped
    size = (cols * S - 5, rows * S - 7)
    h = header(codec.identity, size, k=3)
    ids = np.random.default_rng(0).integers(0, V, (h.num_tiles, 3, 1))
    data = fmt.dumps(h, ids)
    batches = []
    real = codec._decode_u8
    monkeypatch.setattr(
        codec, "_decode_u8", lambda ids, *a: batches.append(len(ids)) or real(ids, *a)
    )
    done = []
    token_file = codec.read(data)
    tracemalloc.start()
    image = next(codec.decode_stream([(None, token_file)], progress=done.append))[1]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert max(batches) == codec.batch_size and sum(done) == h.num_tiles == sum(batches)
    all_tiles = h.num_tiles * S * S * 3
    assert peak < all_tiles / 4  # one batch at a time, never every tile's pixels at once
    # Bit-identical to assembling every tile at once.
    recon = real(torch.from_numpy(token_file.ids), torch.full((h.num_tiles,), 3))
    tiles = recon.permute(0, 2, 3, 1).numpy()  # (T S S 3)
    assert np.array_equal(np.asarray(image), np.asarray(tiles_to_image(tiles, size, size)))


def run(capsys, *argv) -> tuple[int, str, str]:
    status = vistok([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_refusal_names_the_file_the_limit_and_the_flag(codec, tmp_path, capsys, monkeypatch):
    model = codec.tokenizer.save_pretrained(tmp_path / "m")
    ident = Codec.from_pretrained(model, device="cpu").identity
    (tmp_path / "big.vtok").write_bytes(bitpacked(header(ident, (40, 30), (S, S))))
    (tmp_path / "ok.vtok").write_bytes(bitpacked(header(ident, (20, 10), (S, S))))
    status, out, err = run(
        capsys, "decode", tmp_path / "big.vtok", tmp_path / "ok.vtok", "-o", tmp_path / "out",
        "--model", model, "-q", "--max-pixels", "1000",
    )  # fmt: skip
    assert status == 1 and (tmp_path / "out" / "ok.png").exists()
    line = next(x for x in err.splitlines() if "big.vtok" in x)
    assert "output pixels 1,200 exceed the limit of 1,000" in line and "--max-pixels" in line
    assert line.count("big.vtok") == 1 and not (tmp_path / "out" / "big.png").exists()
    # Above the warning size: decoded, with a one-line warning (a small one for the test).
    monkeypatch.setattr("tokenizers_vis.cli.common.DEFAULT_LIMITS", Limits(warn_pixels=500))
    status, out, err = run(
        capsys, "decode", tmp_path / "big.vtok", "-o", tmp_path / "big.png", "--model", model,
        "-q", "--max-pixels", "2000",
    )  # fmt: skip
    assert status == 0 and (tmp_path / "big.png").exists()
    assert "warning: " in err and "may be a decompression bomb" in err
    assert len(err.strip().splitlines()) == 1, err


def test_decode_without_model_gives_each_unreadable_files_reason(tmp_path, capsys):
    (tmp_path / "empty.vtok").write_bytes(b"")
    (tmp_path / "junk.vtok").write_bytes(b"VTOK\x01\x00")
    status, out, err = run(capsys, "decode", tmp_path / "empty.vtok", tmp_path / "junk.vtok")
    assert status == 1, err
    assert "no readable .vtok input" not in err
    assert f"{tmp_path / 'empty.vtok'}: " in err and "truncated" in err
    assert f"{tmp_path / 'junk.vtok'}: " in err and "decoded 0 of 2 files (2 failed)" in out


def test_cli_shows_tile_progress_for_long_files(codec, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("tokenizers_vis.cli.batch.files.LONG_FILE_TILES", 8)
    model = codec.tokenizer.save_pretrained(tmp_path / "m")
    ident = Codec.from_pretrained(model, device="cpu").identity
    (tmp_path / "long.vtok").write_bytes(bitpacked(header(ident, (6 * S, 4 * S))))  # 24 tiles
    (tmp_path / "short.vtok").write_bytes(bitpacked(header(ident, (S, S))))
    status, out, err = run(capsys, "decode", tmp_path / "short.vtok", "--model", model)
    assert status == 0 and "tiles" not in err.replace("tiles_", "")
    status, out, err = run(capsys, "decode", tmp_path / "long.vtok", "--model", model)
    assert status == 0 and "/24 [" in err and "tile/s" in err, err  # a bar over 24 tiles


def test_entropy_decoding_reports_progress_per_group(codec):
    table = static_table(0.3)
    coder = Codec(codec.tokenizer, codec.identity, device="cpu", entropy=table)
    h = header(codec.identity, (10 * S, 10 * S), k=K)  # 100 tiles
    ids = np.random.default_rng(1).integers(0, V, (100, K, 1))
    data = ec.dumps(h, ids, table, group=16)
    done = []
    np.testing.assert_array_equal(coder.read(data, progress=done.append).ids, ids)
    assert done == [16] * 6 + [4]
