"""FlexTok's published architecture, proven against the reference code's own outputs.

The fixture (tools/golden/flextok.py, apple/ml-flextok @ the commit in its metadata) holds the
reference's state dict at tiny width in its own key names, input images and what the reference
computed from them. Here `convert/flextok.py` maps the state dict onto our spec and our modules
must reproduce every output: VAE latents, register latents, ids, decoder velocities at several
prefix lengths and under the null condition, and a seeded Euler decode.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import tokenizers_vis.convert.flextok  # noqa: F401  (registers the family)
from tokenizers_vis import Tokenizer, Tokens
from tokenizers_vis.convert.base import FAMILIES, ConversionError

FIXTURE = Path(__file__).parent / "fixtures" / "golden" / "flextok_tiny.safetensors"
ATOL = 1e-4


def load_fixture() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(FIXTURE), "pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        metadata = f.metadata()
    model = {k[len("model.") :]: v.float() for k, v in tensors.items() if k.startswith("model.")}
    out = {k[len("out.") :]: v for k, v in tensors.items() if k.startswith("out.")}
    return model, out, metadata


@pytest.fixture(scope="module")
def golden() -> tuple[Tokenizer, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model, out, metadata = load_fixture()
    converted = FAMILIES["flextok"].convert({"model": model}, json.loads(metadata["config"]))
    assert converted.unmapped == []
    tok = Tokenizer(**converted.spec).eval()
    tok.load_state_dict(converted.state, strict=True)
    images = out["images_uint8"].float() / 127.5 - 1.0
    return tok, out, {"images": images}


def test_fixture_records_the_reference() -> None:
    _, _, metadata = load_fixture()
    assert metadata["reference"] == "apple/ml-flextok" and len(metadata["commit"]) == 40


def test_vae_and_register_latents_and_ids(golden) -> None:
    tok, out, inputs = golden
    with torch.no_grad():
        latents = tok.encoder.vae(inputs["images"])  # (b c s s)
        registers = tok.encoder(inputs["images"])  # (b n d)
    torch.testing.assert_close(latents, out["vae_latents"], atol=ATOL, rtol=0)
    torch.testing.assert_close(registers, out["register_latents"], atol=ATOL, rtol=0)
    ids = tok.encode(inputs["images"]).ids  # (b n 1)
    assert torch.equal(ids[..., 0], out["ids"])


@pytest.mark.parametrize("k", [1, 3, 8])
def test_velocity_at_every_prefix_length(golden, k: int) -> None:
    tok, out, _ = golden
    b, n = out["ids"].shape
    codes = tok.quantizer.ids_to_codes(out["ids"][..., None])  # (b n d)
    torch.testing.assert_close(codes, out["quants"], atol=0, rtol=0)
    tokens, key_mask = tok.token_drop(codes, torch.full((b,), k))
    with torch.no_grad():
        v = tok.decoder.velocity(out["noised"], out["t"], tokens, key_mask)
    torch.testing.assert_close(v, out[f"velocity_k{k}"], atol=ATOL, rtol=0)


def test_velocity_under_the_null_condition(golden) -> None:
    tok, out, _ = golden
    codes = tok.quantizer.ids_to_codes(out["ids"][..., None])
    drop = torch.ones(codes.shape[0], dtype=torch.bool)
    with torch.no_grad():
        v = tok.decoder.velocity(out["noised"], out["t"], codes, None, drop)
    torch.testing.assert_close(v, out["velocity_null"], atol=ATOL, rtol=0)


def test_seeded_euler_decode(golden) -> None:
    tok, out, _ = golden
    k, steps = int(out["sample_k"]), int(out["sample_steps"])
    images = tok.decode(
        Tokens(out["ids"][:, :k, None]),
        num_steps=steps,
        generator=torch.Generator().manual_seed(3),
        guidance_scale=1.0,
    )
    torch.testing.assert_close(images, out["sample_images"].clamp(-1, 1), atol=ATOL, rtol=0)


def test_wrong_family_names_the_telling_keys() -> None:
    with pytest.raises(ConversionError, match="enc_register_module.registers"):
        FAMILIES["flextok"].convert({"model": {"encoder.layers.0.weight": torch.zeros(1)}})


def test_unknown_tensors_stay_unmapped() -> None:
    model, _, metadata = load_fixture()
    model["decoder.module_dict.dec_repa_proj.weight"] = torch.zeros(2, 2)
    converted = FAMILIES["flextok"].convert({"model": model}, json.loads(metadata["config"]))
    assert converted.unmapped == ["model:decoder.module_dict.dec_repa_proj.weight"]


def test_without_config_the_scaling_factor_is_refused() -> None:
    model, _, _ = load_fixture()
    with pytest.raises(ConversionError, match="scaling factor"):
        FAMILIES["flextok"].convert({"model": model}, None)


def test_converted_directory_is_self_contained(golden, tmp_path: Path) -> None:
    tok, out, inputs = golden
    tok.save_pretrained(tmp_path / "flextok")
    loaded = Tokenizer.from_pretrained(tmp_path / "flextok").eval()
    assert any(key.startswith("encoder.vae.") for key in loaded.state_dict())  # the VAE travels
    assert torch.equal(loaded.encode(inputs["images"]).ids[..., 0], out["ids"])
