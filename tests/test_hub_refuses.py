"""Loading refuses before it allocates: the spec is checked against the safetensors header on the
meta device, and every failure is one PretrainedError naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tokenizers_vis as tv
from tokenizers_vis.hub import PretrainedError, read_weights_header


@pytest.fixture
def model_dir(tmp_path) -> Path:
    return tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path / "m")


def _edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config["tokenizer"].update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_huge_spec_is_refused_without_building_it_for_real(model_dir, monkeypatch):
    """max_tokens 1e9 would need ~100 GB; the real (non-meta) constructor must never run."""
    _edit_config(model_dir, max_tokens=1_000_000_000)
    real_builds = []
    init = tv.Tokenizer.__init__

    def spy(self, *args, **kwargs):
        if torch.empty(0).device.type != "meta":
            real_builds.append(kwargs.get("max_tokens"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(tv.Tokenizer, "__init__", spy)
    with pytest.raises(PretrainedError, match=r"config\.json: the spec needs more than .* GiB"):
        tv.Tokenizer.from_pretrained(model_dir)
    assert real_builds == []


def test_spec_needing_far_more_memory_than_the_file_is_refused(model_dir, monkeypatch):
    from tokenizers_vis import hub

    monkeypatch.setattr(hub, "_SLACK_BYTES", 0)  # so a tiny model's buffers count
    monkeypatch.setattr(hub, "_tensor_bytes", lambda model: 10 * 2**30)
    with pytest.raises(PretrainedError, match=r"needs 10\.0 GiB of tensors"):
        tv.Tokenizer.from_pretrained(model_dir)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:100], "not a readable safetensors file"),  # truncated header
        (lambda b: b[: len(b) // 2], "not a readable safetensors file"),  # truncated data
        (lambda b: b[:8] + b"{not json" + b[17:], "not a readable safetensors file"),
        (lambda b: b"", "not a readable safetensors file"),
    ],
)
def test_damaged_weights_name_the_file(model_dir, damage, message):
    weights = model_dir / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(PretrainedError, match=message) as info:
        tv.Tokenizer.from_pretrained(model_dir)
    assert str(weights) in str(info.value)


def test_a_renamed_tensor_is_named(model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    weights = model_dir / "model.safetensors"
    state = load_file(weights)
    name = sorted(state)[0]
    state["renamed"] = state.pop(name)
    save_file(state, weights)
    with pytest.raises(
        PretrainedError, match=f"missing \\['{name}'\\], unexpected \\['renamed'\\]"
    ):
        tv.Tokenizer.from_pretrained(model_dir)


def test_header_is_read_without_tensor_data(model_dir):
    shapes = read_weights_header(model_dir / "model.safetensors")
    tok = tv.create_tokenizer("tiny_cpu_fsq")
    assert shapes == {k: tuple(v.shape) for k, v in tok.state_dict().items()}


def test_shipped_model_still_loads_and_copies_do_too(tmp_path):
    shutil.copytree(tv.hub.resolve("emoji32"), tmp_path / "copy")
    tok = tv.Tokenizer.from_pretrained(tmp_path / "copy")
    assert tok.max_tokens == 64 and tok.vocab_sizes == (4096,)
