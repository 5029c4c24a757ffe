"""Tokenizer contract over every preset: shapes, prefixes, mixed lengths, errors, save -> load."""

from __future__ import annotations

import json

import pytest
import torch

import tokenizers_vis as tv
from tokenizers_vis.hub import PretrainedError
from tokenizers_vis.presets import merge, preset_spec

SMALL = [n for n in tv.list_tokenizers() if n.startswith("tiny_cpu")]


# Parameters of every preset: a fingerprint of its architecture, so a change to a shared part
# (a layer, a default) that silently resizes a preset fails here. Recorded from the presets; a
# new preset adds its line (the test says which is missing).
PARAMETERS = {
    "emoji32_fsq": 4_518_968,
    "photo64_fsq": 4_598_984,
    "emoji32_fsq_rf": 6_018_104,
    "emoji32_fvq_2x4096_k32": 4_521_624,
    "emoji32_fvq_2x64": 4_523_940,
    "emoji32_vq": 4_522_056,
    "flextok_d12": 333_011_161,
    "flextok_d18": 839_968_345,
    "flextok_d28": 2_034_611_033,
    "one_d_piece_b256": 205_057_563,
    "one_d_piece_l256": 641_477_659,
    "one_d_piece_s256": 83_738_651,
    "tiny_cpu_fsq": 30_454,
    "tiny_cpu_fvq": 31_752,
    "tiny_cpu_vq": 30_784,
    "titok_b64_vq": 204_762_651,
    "titok_bl128_vq8k": 390_078_932,
    "titok_bl64_vq8k": 389_964_244,
    "titok_l32_vq": 641_018_907,
    "titok_s128_vq": 83_607_579,
    "titok_sl256_vq8k": 330_127_316,
    "vit_b16_k64_vq": 171_853_080,
}


@pytest.mark.parametrize("name", tv.list_tokenizers())
def test_every_preset_builds_with_its_shapes_size_and_spec(name: str) -> None:
    spec = preset_spec(name)
    with torch.device("meta"):  # ImageNet presets build without allocating 170M parameters
        tok = tv.create_tokenizer(name)
        again = tv.Tokenizer(**tok.config)  # the spec it records rebuilds it
        s, k_max, d = tok.image_size, tok.max_tokens, tok.quantizer.dim
        images = torch.empty(2, 3, s, s)
        latents = tok.encoder(images)  # shapes only: meta tensors compute nothing
        decoded = tok.decoder(torch.empty(2, k_max, d), None, images=images)
    assert tok.config == {
        **spec,
        "token_drop": spec.get("token_drop") or {"name": "nested_dropout"},
    }
    assert again.config == tok.config
    shapes = {k: v.shape for k, v in tok.state_dict().items()}
    assert {k: v.shape for k, v in again.state_dict().items()} == shapes
    assert latents.shape == (2, k_max, d) and decoded.images.shape == (2, 3, s, s)
    assert len(tok.vocab_sizes) >= 1 and all(v >= 2 for v in tok.vocab_sizes)
    assert name in PARAMETERS, f"record the parameter count of new preset {name}"
    assert sum(p.numel() for p in tok.parameters()) == PARAMETERS[name]


@pytest.mark.parametrize("name", SMALL + ["emoji32_fsq"])
def test_forward_encode_decode_shapes(name: str) -> None:
    tok = tv.create_tokenizer(name).eval()
    s, k_max, g = tok.image_size, tok.max_tokens, len(tok.vocab_sizes)
    images = torch.rand(2, 3, s, s) * 2 - 1
    out = tok(images)
    assert out.images.shape == images.shape and out.ids.shape == (2, k_max, g)
    for k in (1, k_max // 2, k_max):
        tokens = tok.encode(images, num_tokens=k)
        assert tokens.ids.shape == (2, k, g) and tokens.ids.dtype == torch.int64
        decoded = tok.decode(tokens)
        assert decoded.shape == images.shape and decoded.abs().max() <= 1


@pytest.mark.parametrize("name", SMALL)
def test_prefix_ids_agree_and_mixed_lengths_match_single(name: str) -> None:
    tok = tv.create_tokenizer(name).eval()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    full = tok.encode(images).ids
    assert torch.equal(tok.encode(images, num_tokens=3).ids, full[:, :3])
    lengths = torch.tensor([1, 8, 4])
    mixed = tok.encode(images, num_tokens=lengths)
    assert mixed.ids.shape == (3, 8, len(tok.vocab_sizes)) and torch.equal(mixed.lengths, lengths)
    assert int(mixed.ids[0, 1:].abs().sum()) == 0  # padding
    together = tok.decode(mixed)
    for i, k in enumerate(lengths.tolist()):
        alone = tok.decode(tv.Tokens(full[i : i + 1, :k]))
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", SMALL)
def test_training_samples_lengths_per_sample_and_gradients_flow(name: str) -> None:
    tok = tv.create_tokenizer(name).train()
    images = torch.rand(16, 3, 16, 16) * 2 - 1
    out = tok(images)
    assert out.lengths.shape == (16,) and len(out.lengths.unique()) > 1
    loss = (out.images - images).square().mean() + sum(out.losses.values(), torch.zeros(()))
    loss.backward()
    no_grad = [n for n, p in tok.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad or all("mask_token" in n for n in no_grad), no_grad


@pytest.mark.parametrize("name", SMALL)
def test_bf16_autocast_forward(name: str) -> None:
    tok = tv.create_tokenizer(name).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tok(images)
    assert torch.isfinite(out.images.float()).all()
    assert out.ids.dtype == torch.int64
    assert (out.ids == tok(images).ids).float().mean() > 0.7  # bf16 nudges few latents across cells


@pytest.mark.parametrize("name", SMALL)
def test_save_load_round_trip_is_exact(name: str, tmp_path) -> None:
    tok = tv.create_tokenizer(name).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    tok.save_pretrained(tmp_path / "m")
    loaded = tv.Tokenizer.from_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["format_version"] == tv.hub.FORMAT_VERSION and config["tokenizer"] == tok.config
    for k in (1, 5, 8):
        a, b = tok.encode(images, num_tokens=k), loaded.encode(images, num_tokens=k)
        assert torch.equal(a.ids, b.ids)
        assert torch.equal(tok.decode(a), loaded.decode(b))
    assert not list((tmp_path / "m").glob("*.tmp"))


def test_load_is_strict_and_errors_are_clear(tmp_path) -> None:
    tok = tv.create_tokenizer("tiny_cpu_fsq")
    tok.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["tokenizer"]["decoder"]["width"] = 64  # weights no longer fit the spec
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match="does not match|size mismatch|invalid"):
        tv.Tokenizer.from_pretrained(tmp_path / "m")
    config["format_version"] = 99
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match="format_version"):
        tv.Tokenizer.from_pretrained(tmp_path / "m")
    with pytest.raises(PretrainedError, match="neither a directory nor a shipped model"):
        tv.Tokenizer.from_pretrained(tmp_path / "missing")


def test_user_errors_are_clear() -> None:
    tok = tv.create_tokenizer("tiny_cpu_fsq").eval()
    with pytest.raises(ValueError, match=r"images must be \(b, 3, 16, 16\)"):
        tok.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="num_tokens must be in 1..8"):
        tok.encode(torch.zeros(1, 3, 16, 16), num_tokens=9)
    with pytest.raises(ValueError, match="can decode 1..8 tokens"):
        tok.decode(tv.Tokens(torch.zeros(1, 9, 1, dtype=torch.int64)))
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(tv.Tokens(torch.full((1, 2, 1), 125)))
    with pytest.raises(KeyError, match="known: emoji32_fsq"):
        tv.create_tokenizer("nope")


def test_overrides_merge_and_replace() -> None:
    base = {"encoder": {"name": "vit_1d", "width": 8, "depth": 2}}
    assert merge(base, {"encoder": {"width": 16}})["encoder"] == {
        "name": "vit_1d",
        "width": 16,
        "depth": 2,
    }
    assert merge(base, {"encoder": {"name": "registers"}})["encoder"] == {"name": "registers"}
    tok = tv.create_tokenizer("tiny_cpu_fsq", max_tokens=4, quantizer={"levels": [3, 3]})
    assert tok.max_tokens == 4 and tok.vocab_sizes == (9,)


@pytest.mark.parametrize("name", SMALL)
def test_decode_is_decode_codes_of_the_ids_and_decode_codes_is_differentiable(name: str) -> None:
    tok = tv.create_tokenizer(name).eval()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    tokens = tok.encode(images, num_tokens=torch.tensor([2, 8, 5]))  # ids (3 8 g), padded
    codes = tok.quantizer.ids_to_codes(tokens.ids)  # all K = 8 positions
    assert torch.equal(tok.decode(tokens), tok.decode_codes(codes, tokens.lengths))
    codes = codes.detach().requires_grad_(True)  # refinement steps latents through this call
    tok.decode_codes(codes, tokens.lengths).square().sum().backward()
    seen = codes.grad.abs().sum(-1)  # (3 8): only a sample's own prefix reaches the decoder
    assert (seen[0, :2] > 0).all() and (seen[1] > 0).all() and (seen[2, :5] > 0).all()
    assert seen[0, 2:].sum() == 0 and seen[2, 5:].sum() == 0
    assert torch.equal(tok.check_lengths(3, 2, torch.device("cpu")), torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="num_tokens must be in 1..8"):
        tok.check_lengths(torch.tensor([1, 0]), 2, torch.device("cpu"))


@pytest.mark.parametrize("name", SMALL)
def test_forward_carries_the_quantizer_and_decoder_outputs(name: str) -> None:
    tok = tv.create_tokenizer(name).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = tok(images, num_tokens=3)
    q = tok.quantizer(tok.encoder(images))
    assert type(out.quantized) is type(q) and torch.equal(out.quantized.codes, q.codes)
    assert out.ids is out.quantized.ids and out.images is out.decoded.images
    assert out.losses == {**out.quantized.losses, **out.decoded.losses}
    assert out.lengths.tolist() == [3, 3]
