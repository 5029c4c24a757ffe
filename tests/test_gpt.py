"""GPT model contracts: causal masking, the factorized head, the entropy-model interface, presets,
save -> load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from generation import GPT, GPT_PRESETS, gpt_spec
from tokenizers_vis import PretrainedError

pytestmark = pytest.mark.usefixtures("one_thread")

VOCABS = {"single": [125], "factorized": [7, 5, 3]}


def tiny_gpt(vocab_sizes: list[int], max_tokens: int = 8, num_classes: int = 3, **kw) -> GPT:
    """A tiny GPT whose outputs are not zero-initialised, so every logit depends on its inputs."""
    torch.manual_seed(0)
    gpt = GPT(vocab_sizes, max_tokens, num_classes, width=32, depth=2, num_heads=2, **kw).eval()
    with torch.no_grad():
        for out in gpt.outputs:
            out.weight.normal_(std=0.5)
    return gpt


def random_ids(vocab_sizes: list[int], b: int = 2, n: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, v, (b, n), generator=g) for v in vocab_sizes], -1)


@pytest.mark.parametrize("kind", VOCABS)
def test_causal_masking(kind: str) -> None:
    """Changing token t never changes the logits before t, nor the first sub-head's at t (later
    sub-heads at t see the earlier sub-ids of t, by design); it does change every later one."""
    vocabs = VOCABS[kind]
    gpt = tiny_gpt(vocabs)
    ids, labels = random_ids(vocabs), torch.tensor([0, 2])
    base = gpt(ids, labels)
    for t in range(ids.shape[1] - 1):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % torch.tensor(vocabs)  # every sub-id of token t
        new = gpt(changed, labels)
        for j, (a, b) in enumerate(zip(base, new, strict=True)):
            torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
            assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :]), (t, j)
        torch.testing.assert_close(base[0][:, t], new[0][:, t], rtol=0, atol=1e-6)


def test_class_token_conditions_every_position() -> None:
    gpt = tiny_gpt([125])
    ids = random_ids([125])
    a, b = gpt(ids, torch.tensor([0, 0]))[0], gpt(ids, torch.tensor([1, gpt.null_class]))[0]
    assert (a - b).abs().amax(dim=-1).min() > 1e-4  # each position, each sample


def test_factorized_head_shapes_and_sub_ids() -> None:
    """g heads of their own vocabulary size; head j sees exactly sub-ids 0..j-1 of its position."""
    vocabs = VOCABS["factorized"]
    gpt = tiny_gpt(vocabs)
    ids, labels = random_ids(vocabs, b=3, n=5), torch.tensor([0, 1, 3])
    logits = gpt(ids, labels)
    assert [tuple(x.shape) for x in logits] == [(3, 5, v) for v in vocabs]
    t = 2
    for j in range(len(vocabs)):
        changed = ids.clone()
        changed[:, t, j] = (changed[:, t, j] + 1) % vocabs[j]
        new = gpt(changed, labels)
        for jj in range(len(vocabs)):
            same = torch.allclose(logits[jj][:, t], new[jj][:, t], rtol=0, atol=1e-6)
            assert same == (jj <= j), (j, jj)  # later sub-heads see it, earlier ones do not
            torch.testing.assert_close(logits[jj][:, :t], new[jj][:, :t], rtol=0, atol=1e-6)


def test_single_codebook_head_is_one_linear() -> None:
    assert len(tiny_gpt([125]).head_blocks) == 0
    assert len(tiny_gpt([7, 5], head_depth=2).head_blocks) == 2


@pytest.mark.parametrize("kind", VOCABS)
def test_next_token_logits_match_teacher_forcing(kind: str) -> None:
    """The entropy-model interface gives, prefix by prefix, the logits of the full forward."""
    vocabs = VOCABS[kind]
    gpt = tiny_gpt(vocabs)
    ids, labels = random_ids(vocabs, n=6), torch.tensor([1, 0])
    full = gpt(ids, labels)
    for t in range(6):
        for j in range(len(vocabs)):
            step = gpt.next_token_logits(ids[:, :t], labels, ids[:, t, :j])
            torch.testing.assert_close(step, full[j][:, t], rtol=1e-5, atol=1e-5)


def test_fresh_model_predicts_uniform() -> None:
    gpt = GPT([125], 8, 2, width=32, depth=1, num_heads=2)
    (logits,) = gpt(random_ids([125]), torch.tensor([0, 1]))
    assert torch.equal(logits, torch.zeros_like(logits))  # zero-initialised outputs: log(V) loss


def test_labels_checked_and_dropped() -> None:
    gpt = tiny_gpt([125])
    ids = random_ids([125])
    with pytest.raises(ValueError, match="labels must be in 0..3"):
        gpt(ids, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="at most|predicts tokens"):
        gpt.next_token_logits(random_ids([125], n=8), None)  # 8 tokens known: nothing left
    labels = torch.tensor([0, 1, 2, 1])
    assert torch.equal(gpt.drop_labels(labels, 0.0), labels)
    assert torch.equal(gpt.drop_labels(labels, 1.0), torch.full((4,), gpt.null_class))
    g = torch.Generator().manual_seed(0)
    dropped = gpt.drop_labels(torch.zeros(1000, dtype=torch.long), 0.3, generator=g)
    assert 0.25 < (dropped == gpt.null_class).float().mean() < 0.35


def test_save_load_round_trip(tmp_path: Path) -> None:
    gpt = tiny_gpt([7, 5], num_classes=2, class_names=["a", "b"])
    ids, labels = random_ids([7, 5]), torch.tensor([0, 1])
    gpt.save_pretrained(tmp_path / "gpt", extra={"tokenizer": "tok"})
    loaded = GPT.from_pretrained(tmp_path / "gpt")
    assert not loaded.training and loaded.class_names == ["a", "b"]
    for a, b in zip(gpt(ids, labels), loaded(ids, labels), strict=True):
        assert torch.equal(a, b)
    config = json.loads((tmp_path / "gpt" / "config.json").read_text())
    assert config["kind"] == "gpt" and config["extra"] == {"tokenizer": "tok"}
    assert sorted(p.name for p in (tmp_path / "gpt").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]


def test_load_rejects_foreign_and_broken_dirs(tmp_path: Path) -> None:
    import tokenizers_vis as tv

    tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path / "tok")
    with pytest.raises(PretrainedError, match="(?i)not a gpt"):
        GPT.from_pretrained(tmp_path / "tok")
    tiny_gpt([125]).save_pretrained(tmp_path / "gpt")
    weights = tmp_path / "gpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(PretrainedError, match="not a readable safetensors file"):
        GPT.from_pretrained(tmp_path / "gpt")
    with pytest.raises(PretrainedError, match="neither a directory"):
        GPT.from_pretrained(tmp_path / "nowhere")


EMOJI_DATA = {"vocab_sizes": [4096], "max_tokens": 64, "num_classes": 9, "class_names": None}
IMAGENET_DATA = {"vocab_sizes": [16384], "max_tokens": 256, "num_classes": 1000}
# (data, parameter range): gpt_emoji must ship under ~20 MB in fp32; gpt_b is LlamaGen's GPT-B.
PRESET_SIZES = {
    "gpt_tiny": ({"vocab_sizes": [125], "max_tokens": 8}, (1e3, 1e5)),
    "gpt_emoji": (EMOJI_DATA, (2e6, 5e6)),
    "gpt_b": (IMAGENET_DATA, (100e6, 125e6)),
}


@pytest.mark.parametrize("name", sorted(GPT_PRESETS))
def test_presets(name: str) -> None:
    data, (low, high) = PRESET_SIZES[name]
    spec = gpt_spec(name, data)
    with torch.device("meta"):  # no memory, no time: only the shapes
        gpt = GPT(**spec)
    count = sum(p.numel() for p in gpt.parameters())
    assert low <= count <= high, count
    assert {key: gpt.config[key] for key in spec} == spec


def test_gpt_spec_merges_and_checks() -> None:
    spec = gpt_spec({"name": "gpt_tiny", "depth": 3}, {"vocab_sizes": [125], "max_tokens": 8})
    assert spec["depth"] == 3 and spec["width"] == GPT_PRESETS["gpt_tiny"]["width"]
    with pytest.raises(ValueError, match="max_tokens"):
        gpt_spec({"name": "gpt_tiny", "max_tokens": 16}, {"vocab_sizes": [125], "max_tokens": 8})
    with pytest.raises(ValueError, match="lacks vocab_sizes"):
        gpt_spec("gpt_tiny")
    with pytest.raises(KeyError, match="known: gpt_b"):
        gpt_spec("gpt_huge", {"vocab_sizes": [2], "max_tokens": 1})


def test_shipped_names_resolve_and_directories_win(tmp_path: Path, monkeypatch) -> None:
    shipped = tmp_path / "pretrained"
    tiny_gpt([125]).save_pretrained(shipped / "gpt_tiny_test")
    monkeypatch.setattr(GPT, "shipped_dir", shipped)
    assert GPT.list_pretrained() == ["gpt_tiny_test"]
    assert GPT.from_pretrained("gpt_tiny_test").config == tiny_gpt([125]).config
    # An unknown name: the one message, listing the GPTs shipped (never the tokenizers).
    with pytest.raises(PretrainedError, match="neither a directory.*shipped: gpt_tiny_test$"):
        GPT.from_pretrained("gpt_not_shipped")
    (tmp_path / "gpt_tiny_test").mkdir()  # a local directory wins over the shipped name
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PretrainedError, match="config.json is missing"):
        GPT.from_pretrained("gpt_tiny_test")
