"""The GPT as an entropy model (payload coding 2): found through the `vistok.entropy_models`
entry point, its incremental probabilities equal the teacher-forced ones, files round trip
exactly (g = 1 and factorized g = 3, classes), sizes match -log2 p, mismatches are refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tokenizers_vis as tv
from generation import GPT, gpt_spec
from generation.entropy import GPTEntropyModel
from tokenizers_vis.codec import (
    Codec,
    EntropyMismatchError,
    EntropyModelError,
    entropy_kinds,
    load_entropy_model,
    read_header,
)
from tokenizers_vis.codec import entropy_coding as ec
from tokenizers_vis.codec.format import Header, read_payload

pytestmark = pytest.mark.usefixtures("one_thread")
TOK = bytes(range(8))


def random_gpt(vocab_sizes, max_tokens=8, num_classes=3, seed=0) -> GPT:
    """The `gpt_tiny` preset with random (not zero-initialised) output layers, so every
    probability depends on the prefix."""
    torch.manual_seed(seed)
    data = {"vocab_sizes": list(vocab_sizes), "max_tokens": max_tokens, "num_classes": num_classes}
    gpt = GPT(**gpt_spec("gpt_tiny", data)).eval()
    with torch.no_grad():
        for out in gpt.outputs:
            out.weight.normal_(std=0.5)
    return gpt


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gpt") / "gpt"
    random_gpt([125]).save_pretrained(path, extra={"tokenizer": "tiny_cpu_fsq"})
    return path


def sample(model: GPTEntropyModel, lengths, seed=0) -> np.ndarray:
    """Ids (T, max k, g) drawn from the model itself, zero past each tile's k."""
    rng = np.random.default_rng(seed)
    g = len(model.vocab_sizes)
    ids = np.zeros((len(lengths), max(lengths), g), dtype=np.int64)
    with model.session():
        for i, k in enumerate(lengths):
            state = model.start(1)
            for t in range(k):
                for j in range(g):
                    p = model.next_probabilities(state, ids[i : i + 1, :t], ids[i : i + 1, t, :j])
                    p = p[0].astype(np.float64)
                    ids[i, t, j] = rng.choice(len(p), p=p / p.sum())
    return ids


def test_the_gpt_is_found_through_the_entry_point(gpt_dir):
    assert entropy_kinds()["gpt"] == "generation.entropy:load"
    model = load_entropy_model(gpt_dir)
    assert isinstance(model, GPTEntropyModel) and model.coding == 2
    files = (gpt_dir / "config.json").read_bytes() + (gpt_dir / "model.safetensors").read_bytes()
    assert model.identity == hashlib.sha256(files).digest()[:4]
    assert model.vocab_sizes == (125,) and model.class_names == ("0", "1", "2")


@pytest.mark.parametrize("vocab", [[125], [7, 5, 3]], ids=["g1", "g3"])
def test_incremental_probabilities_equal_teacher_forcing(vocab):
    gpt = random_gpt(vocab)
    model = GPTEntropyModel(gpt)
    ids = sample(model, [8, 8], seed=1)  # (2 8 g)
    with torch.no_grad():
        forced = [lg.softmax(-1) for lg in gpt(torch.from_numpy(ids), torch.tensor([1, 1]))]
    with model.session():
        state = model.start(2, condition=1)
        for t in range(8):
            for j in range(len(vocab)):
                p = model.next_probabilities(state, ids[:, :t], ids[:, t, :j])  # (2 V_j)
                assert p.dtype == np.float32
                np.testing.assert_allclose(p, forced[j][:, t].numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("vocab", [[125], [7, 5, 3]], ids=["g1", "g3"])
def test_files_round_trip_exactly_at_the_ideal_size(vocab):
    model = GPTEntropyModel(random_gpt(vocab))
    lengths = [8, 3, 6, 1, 8]
    header = Header(TOK, (16 * len(lengths), 16), 16, 8, tuple(vocab), tuple(lengths))
    ids = sample(model, lengths, seed=2)
    threads = torch.get_num_threads()
    data = ec.dumps(header, ids, model, group=2)
    assert torch.get_num_threads() == threads  # the coder's one-thread session is undone
    read, payload = read_header(data)
    assert read.coding == 2
    np.testing.assert_array_equal(ec.loads(data, [model], TOK).ids, ids)
    _, bits = ec.encode_ids(model, ids, np.array(lengths), group=2)
    assert abs(payload - bits / 8) <= 2, (payload, bits / 8)


def test_a_class_is_stored_and_conditions_the_probabilities():
    model = GPTEntropyModel(random_gpt([125]))
    header = Header(TOK, (16, 16), 16, 8, (125,), (8,))
    ids = sample(model, [8], seed=3)
    unconditional, with_class = (
        ec.dumps(header, ids, model),
        ec.dumps(header, ids, model, condition=2),
    )
    assert bytes(read_payload(unconditional)[1]) != bytes(read_payload(with_class)[1])
    assert ec.EntropyParams.parse(read_header(with_class)[0].coding_params).condition == 2
    for data in (unconditional, with_class):
        np.testing.assert_array_equal(ec.loads(data, [model]).ids, ids)


def test_another_gpt_or_other_probabilities_are_refused(gpt_dir, tmp_path):
    model = load_entropy_model(gpt_dir)
    header = Header(TOK, (32, 16), 16, 8, (125,), (8, 8))
    data = ec.dumps(header, sample(model, [8, 8], seed=4), model)
    random_gpt([125], seed=1).save_pretrained(tmp_path / "other")
    other = load_entropy_model(tmp_path / "other")
    with pytest.raises(EntropyModelError, match=f"{model.identity.hex()}, not with the gpt"):
        ec.loads(data, [other])
    # The same identity with other weights: what another machine's float differences look like.
    drifted = GPTEntropyModel(random_gpt([125], seed=1), identity=model.identity)
    with pytest.raises(EntropyMismatchError, match="fail their checksum"):
        ec.loads(data, [drifted])


def test_the_codec_codes_images_with_the_gpt(gpt_dir, tmp_path):
    torch.manual_seed(0)
    tok = tv.create_tokenizer("tiny_cpu_fsq").eval()
    with torch.no_grad():
        tok.encoder.to_codes.weight.mul_(10)  # spread the ids of an untrained encoder
    tok_dir = tok.save_pretrained(tmp_path / "tok")
    plain = Codec.from_pretrained(tok_dir, device="cpu")
    coded = Codec.from_pretrained(tok_dir, entropy=gpt_dir, device="cpu")
    image = (np.random.default_rng(0).random((20, 40, 3)) * 255).astype(np.uint8)
    for k in (8, 3):
        data = coded.encode_image(Image.fromarray(image), num_tokens=k, entropy_class=0)
        assert read_header(data)[0].coding == 2
        np.testing.assert_array_equal(
            coded.read(data).ids,
            plain.read(plain.encode_image(Image.fromarray(image), num_tokens=k)).ids,
        )
        with pytest.raises(EntropyModelError, match="which was not given"):
            plain.read(data)
    with pytest.raises(ValueError, match="classes 0..2"):
        coded.encode_image(Image.fromarray(image), entropy_class=3)
    short = GPTEntropyModel(random_gpt([125], max_tokens=4))
    with pytest.raises(ValueError, match="at most 4 tokens"):
        Codec(plain.tokenizer, plain.identity, device="cpu", entropy=short).encode_image(
            Image.fromarray(image)
        )
