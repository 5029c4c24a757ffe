"""A tokenizer for 2x larger images started from a trained one (`training.upscale`)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import tokenizers_vis as tv
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer
from tokenizers_vis.training.upscale import upscale_tokenizer


def _doubled(spec: dict, max_tokens: int | None = None) -> dict:
    new = copy.deepcopy(spec)
    new["image_size"] *= 2
    new["max_tokens"] = max_tokens or spec["max_tokens"]
    for part in ("encoder", "decoder"):
        new[part]["patch_size"] *= 2
    return new


def _trained_like(spec: dict) -> Tokenizer:
    torch.manual_seed(0)
    tok = Tokenizer(**spec).eval()
    with torch.no_grad():  # non-zero everywhere, as after training (some tables start at 0)
        for p in tok.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return tok


@torch.no_grad()
def test_the_upscaled_tokenizer_is_the_old_one_at_half_resolution():
    spec = preset_spec("tiny_cpu_fsq")
    old = _trained_like(spec)
    # K' = K: with more tokens, the extra (fresh) ones join the encoder's attention and move the
    # first K a little; the decoder masks them, so decodes of a prefix stay exact.
    new = upscale_tokenizer(old, _doubled(spec)).eval()
    torch.manual_seed(1)
    images = torch.rand(3, 3, 32, 32) * 2 - 1  # (b 3 2s 2s)
    half = F.avg_pool2d(images, 2)  # (b 3 s s): what the copied weights see
    ids_new, ids_old = new.encode(images).ids, old.encode(half).ids
    k = spec["max_tokens"]
    assert torch.equal(ids_new, ids_old)  # the old tokens
    for prefix in (1, 4, k):
        old_pixels = old.decode(_prefix(ids_old, prefix))
        new_pixels = new.decode(_prefix(ids_new, prefix))  # (b 3 2s 2s)
        expected = F.interpolate(old_pixels, scale_factor=2, mode="nearest")  # (b 3 2s 2s)
        assert torch.allclose(new_pixels, expected, atol=1e-5), prefix


def _prefix(ids: torch.Tensor, k: int) -> tv.Tokens:
    return tv.Tokens(ids[:, :k])


def test_extra_tokens_keep_their_fresh_initialisation_and_other_weights_carry_over():
    spec = preset_spec("tiny_cpu_fsq")
    old = _trained_like(spec)
    torch.manual_seed(5)
    fresh = Tokenizer(**_doubled(spec, 12)).state_dict()
    torch.manual_seed(5)
    new = upscale_tokenizer(old, _doubled(spec, 12)).state_dict()
    k = spec["max_tokens"]
    for name in ("encoder.latent_tokens", "decoder.token_positions"):
        assert torch.equal(new[name][:, :k], old.state_dict()[name])
        assert torch.equal(new[name][:, k:], fresh[name][:, k:])
    block = "decoder.transformer.blocks.0.attn.qkv.weight"
    assert torch.equal(new[block], old.state_dict()[block])


def test_specs_that_cannot_carry_over_are_refused():
    spec = preset_spec("tiny_cpu_fsq")
    old = _trained_like(spec)
    same_size = copy.deepcopy(spec)
    wider = _doubled(spec)
    wider["decoder"]["width"] *= 2
    grid = _doubled(spec)
    grid["encoder"]["patch_size"] //= 2
    fewer = _doubled(spec, max_tokens=4)
    other_codes = _doubled(spec)
    other_codes["quantizer"] = {"name": "fsq", "levels": [8, 8, 8]}
    for bad, match in [
        (same_size, "image_size"),
        (wider, "decoder differs"),
        (grid, "encoder patch_size"),
        (fewer, "max_tokens"),
        (other_codes, "quantizers"),
    ]:
        with pytest.raises(ValueError, match=match):
            upscale_tokenizer(old, bad)


def test_the_tool_writes_a_loadable_start_and_refuses_in_one_line(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "tools" / "upscale_init.py"
    spec = importlib.util.spec_from_file_location("upscale_init", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "start"
    assert tool.main(["--source", "photo32", "--preset", "photo64_fsq", "--out", str(out)]) == 0
    assert Tokenizer.from_pretrained(out).config == preset_spec("photo64_fsq")
    bad = tmp_path / "bad"
    assert tool.main(["--source", "photo32", "--preset", "emoji32_fsq", "--out", str(bad)]) == 2
    assert "image_size must double" in capsys.readouterr().err and not bad.exists()
