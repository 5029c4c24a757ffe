"""The static entropy model (payload coding 1): add-one smoothed per-position tables, their
files and identity, exact file round trips through the Codec (g = 1 and g = 2), refusals, and
the rule that tokenizers_vis never imports generation."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.abc
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tokenizers_vis as tv
from tokenizers_vis.codec import (
    Codec,
    EntropyModelError,
    EntropyModelLoadError,
    StaticTable,
    entropy_kinds,
    load_entropy_model,
    read_header,
)
from tokenizers_vis.codec import entropy_coding as ec
from tokenizers_vis.codec.static_table import STATIC_CONFIG, STATIC_WEIGHTS, count_ids, load
from tokenizers_vis.data.transforms import to_tensor

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def test_counts_and_add_one_probabilities():
    ids = np.array([[[0], [2]], [[0], [1]], [[0], [2]]])  # (3 sequences, 2 tokens, g = 1)
    counts = count_ids(ids, (3,), max_tokens=3)[0]
    assert counts.tolist() == [[3, 0, 0], [0, 1, 2], [0, 0, 0]]
    table = StaticTable([counts])
    np.testing.assert_array_equal(table.probs[0][0], [4 / 6, 1 / 6, 1 / 6])
    np.testing.assert_array_equal(table.probs[0][2], [1 / 3] * 3)  # never seen: uniform
    state = table.start(2)
    p = table.next_probabilities(state, np.zeros((2, 1, 1), np.int64), np.zeros((2, 0), np.int64))
    np.testing.assert_array_equal(p, [[1 / 6, 2 / 6, 3 / 6]] * 2)  # position 1, any prefix
    assert table.bits(ids) == pytest.approx(
        -3 * np.log2(4 / 6) - np.log2(2 / 6) - 2 * np.log2(3 / 6)
    )
    with pytest.raises(ValueError, match="unconditional"):
        table.start(1, condition=0)
    with pytest.raises(ValueError, match="outside 0..2"):
        count_ids(ids + 1, (3,), 3)


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Flat colours with a horizontal ramp: a few ids dominate, as in real data."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, (1, 1, 3))
        ramp = np.linspace(0, 120, 16)[None, :, None] * rng.uniform(-1, 1)  # (1 16 1)
        pixels = np.clip(base + ramp + np.zeros((16, 16, 3)), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(pixels))
    return out


def _fit(codec: Codec, images: list[Image.Image]) -> StaticTable:
    tok = codec.tokenizer
    x = torch.stack([to_tensor(im) for im in images])  # (n 3 16 16) in [-1, 1]
    with torch.no_grad():
        ids = tok.encode(x).ids.numpy()  # (n K g)
    return StaticTable.fit([ids], tok.vocab_sizes, tok.max_tokens, tokenizer_id=codec.identity)


@pytest.fixture(scope="module", params=["tiny_cpu_fsq", "tiny_cpu_fvq"])
def model_dir(request, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tok = tv.create_tokenizer(request.param).eval()
    if request.param.endswith("fsq"):  # at init every tile gets the middle code: spread them
        with torch.no_grad():
            tok.encoder.to_codes.weight.mul_(10)
    return tok.save_pretrained(tmp_path_factory.mktemp(request.param))


def test_files_identity_and_the_registry(model_dir, tmp_path):
    codec = Codec.from_pretrained(model_dir, device="cpu")
    table = _fit(codec, _images(12))
    assert [c.shape for c in table.counts] == [(8, v) for v in codec.tokenizer.vocab_sizes]
    path = table.save(tmp_path / "t")
    doc = json.loads(path.read_text())
    assert doc["kind"] == "static" and doc["tokenizer_id"] == codec.identity.hex()
    weights = (tmp_path / "t" / STATIC_WEIGHTS).read_bytes()
    assert table.identity == hashlib.sha256(weights).digest()[:4]
    for where in (tmp_path / "t", path):  # the folder or its JSON
        loaded = load_entropy_model(where)
        assert isinstance(loaded, StaticTable) and loaded.identity == table.identity
        for a, b in zip(loaded.probs, table.probs, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(FileExistsError):
        table.save(tmp_path / "t")
    doc["fit"] = {"note": "edited"}  # notes are not part of the identity
    path.write_text(json.dumps(doc))
    assert load(tmp_path / "t").identity == table.identity


def test_round_trip_through_the_codec_is_exact_and_costs_the_table_bits(model_dir):
    plain = Codec.from_pretrained(model_dir, device="cpu")
    table = _fit(plain, _images(24))
    coded = Codec(plain.tokenizer, plain.identity, device="cpu", entropy=table)
    for image in _images(4, seed=5) + [Image.new("RGB", (40, 21), (200, 30, 90))]:
        bits_packed, entropy = plain.encode_image(image, num_tokens=6), coded.encode_image(image)
        header, payload = read_header(entropy)
        assert header.coding == 1 and header.lengths == (8,) * header.num_tiles
        ids = coded.read(entropy).ids  # (T 8 g)
        np.testing.assert_array_equal(ids, plain.read(plain.encode_image(image)).ids)
        assert abs(payload - table.bits(ids) / 8) <= 2, (payload, table.bits(ids) / 8)
        same = plain.decode_bytes(plain.encode_image(image))
        assert np.array_equal(np.asarray(coded.decode_bytes(entropy)), np.asarray(same))
        assert read_header(bits_packed)[0].coding == 0  # bit-packed files still decode
        np.testing.assert_array_equal(coded.read(bits_packed).ids, plain.read(bits_packed).ids)


def test_decoding_finds_the_table_beside_the_tokenizer_only_by_identity(model_dir, tmp_path):
    tok_dir = tmp_path / "tok"
    shutil.copytree(model_dir, tok_dir)
    plain = Codec.from_pretrained(tok_dir, device="cpu")
    table = _fit(plain, _images(12))
    coded = Codec(plain.tokenizer, plain.identity, device="cpu", entropy=table)
    data = coded.encode_image(_images(1, seed=9)[0])
    with pytest.raises(EntropyModelError, match=f"static table {table.identity.hex()}, which was"):
        plain.read(data)
    other = StaticTable([c + 1 for c in table.counts], tokenizer_id=plain.identity)
    other.save(tok_dir)
    expected = f"not with the static entropy model {other.identity.hex()}"
    with pytest.raises(EntropyModelError, match=expected):
        Codec.from_pretrained(tok_dir, device="cpu").read(data)
    table.save(tok_dir, overwrite=True)
    found = Codec.from_pretrained(tok_dir, device="cpu")  # no entropy model given
    assert found.entropy is None
    np.testing.assert_array_equal(found.read(data).ids, coded.read(data).ids)
    assert Codec.from_pretrained(tok_dir, entropy="static").entropy.identity == table.identity


def test_a_table_of_another_tokenizer_is_refused(model_dir, tmp_path):
    plain = Codec.from_pretrained(model_dir, device="cpu")
    table = _fit(plain, _images(6))
    table.tokenizer_id = b"\xff" * 8
    with pytest.raises(ValueError, match="fitted on tokenizer ffffffffffffffff"):
        Codec(plain.tokenizer, plain.identity, device="cpu", entropy=table)
    wrong_vocab = StaticTable([np.zeros((8, 5), np.int64)] * len(plain.tokenizer.vocab_sizes))
    with pytest.raises(ValueError, match="vocabularies"):
        Codec(plain.tokenizer, plain.identity, device="cpu", entropy=wrong_vocab)


def test_unreadable_tables_give_one_line(tmp_path):
    table = StaticTable([np.ones((4, 3), np.int64)])
    table.save(tmp_path)
    with pytest.raises(EntropyModelLoadError, match="no such file"):
        load_entropy_model(tmp_path / "missing")
    with pytest.raises(EntropyModelLoadError, match="no entropy_static.json"):
        load_entropy_model(tmp_path / "..")
    with pytest.raises(EntropyModelLoadError, match="has no static table"):
        load(tmp_path / "..")
    (tmp_path / STATIC_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(EntropyModelLoadError, match="not a readable table"):
        load(tmp_path)
    StaticTable([np.ones((4, 5), np.int64)]).save(tmp_path / "x")
    (tmp_path / STATIC_WEIGHTS).write_bytes((tmp_path / "x" / STATIC_WEIGHTS).read_bytes())
    with pytest.raises(EntropyModelLoadError, match="does not match"):
        load(tmp_path)
    (tmp_path / STATIC_CONFIG).write_text('{"format_version": 1, "kind": "mystery"}')
    with pytest.raises(EntropyModelLoadError, match="'mystery'.*known kinds: static"):
        load_entropy_model(tmp_path)
    (tmp_path / STATIC_CONFIG).write_text("{")
    with pytest.raises(EntropyModelLoadError, match="not valid JSON"):
        load_entropy_model(tmp_path)


class _NoGeneration(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "generation":
            raise ImportError(f"tokenizers_vis imported {name}")
        return None


def test_tokenizers_vis_never_imports_generation(model_dir, tmp_path, monkeypatch):
    """No import statement names it, and coding with a static table, loading the registry and
    refusing a GPT-coded file's missing model run with `generation` made unimportable."""
    for path in (ROOT / "tokenizers_vis").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "generation" for n in names), path
    for name in [m for m in sys.modules if m.split(".")[0] == "generation"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoGeneration(), *sys.meta_path])
    plain = Codec.from_pretrained(model_dir, device="cpu")
    _fit(plain, _images(6)).save(tmp_path / "t")
    coded = Codec.from_pretrained(model_dir, entropy=tmp_path / "t", device="cpu")
    data = coded.encode_image(_images(1)[0])
    assert coded.read(data).header.coding == 1
    assert entropy_kinds()["gpt"] == "generation.entropy:load"  # named, not imported
    gpt_coded = dataclasses.replace(read_header(data)[0], coding=2)
    with pytest.raises(EntropyModelError, match="autoregressive model"):
        ec.select_model(gpt_coded, [coded.entropy])
    with pytest.raises(ImportError):
        import generation  # noqa: F401  (the blocker works)


def test_a_static_table_takes_no_class(model_dir):
    plain = Codec.from_pretrained(model_dir, device="cpu")
    coded = Codec(plain.tokenizer, plain.identity, device="cpu", entropy=_fit(plain, _images(4)))
    with pytest.raises(ValueError, match="class-conditional"):
        coded.encode_image(_images(1)[0], entropy_class=0)
