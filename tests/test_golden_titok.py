"""Published TiTok / One-D-Piece / MaskGIT-VQGAN networks, proven equal to the reference code.

The fixtures (tests/fixtures/golden/, written by tools/golden/titok.py from the reference
checkouts named in their metadata) hold tiny reference models with seeded random weights in the
reference's own key names, input images and what the reference computed. Here they go through the
converter families and vistok's components: latents and pixels within 1e-4, ids all equal (fp32).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange
from safetensors import safe_open

import tokenizers_vis.convert.one_d_piece  # noqa: F401  (registration)
import tokenizers_vis.convert.titok  # noqa: F401  (registration)
from tokenizers_vis import Tokenizer
from tokenizers_vis.convert.base import FAMILIES, ConversionError
from tokenizers_vis.convert.titok import Source, map_vqgan
from tokenizers_vis.decoders.maskgit_vqgan import MaskGITVQGANDecoder
from tokenizers_vis.presets import PRESETS

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
TOL = 1e-4
CASES = [("titok", "titok_legacy"), ("titok", "titok_vq8k"), ("one_d_piece", "one_d_piece_legacy")]


def load(name: str) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor], dict]:
    """Fixture -> (sources: name -> their tensors in fp32, other tensors, metadata)."""
    sources: dict[str, dict[str, torch.Tensor]] = {}
    rest = {}
    with safe_open(str(GOLDEN / f"{name}.safetensors"), "pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items()}
        for key in f.keys():
            prefix, _, their_key = key.partition(":")
            if prefix in ("model", "vqgan"):
                sources.setdefault(prefix, {})[their_key] = f.get_tensor(key).float()
            else:
                rest[key] = f.get_tensor(key)
    return sources, rest, meta


def converted_tokenizer(family: str, name: str) -> tuple[Tokenizer, dict, dict]:
    sources, rest, meta = load(name)
    converted = FAMILIES[family].convert(sources, meta["config"])
    assert converted.unmapped == []
    tok = Tokenizer(**converted.spec).eval()
    tok.load_state_dict(converted.state, strict=True)
    return tok, rest, meta


def decode_unclamped(tok: Tokenizer, ids: torch.Tensor, k: int) -> torch.Tensor:
    """`Tokenizer.decode` minus the final clamp: random weights overshoot the pixel range."""
    codes = tok.quantizer.ids_to_codes(ids)  # (b K d)
    tokens, key_mask = tok.token_drop(codes, torch.full((ids.shape[0],), k))
    return tok.decoder.sample(tokens, key_mask)  # (b 3 h w) in [-1, 1] units


@pytest.mark.parametrize(("family", "name"), CASES)
@torch.no_grad()
def test_converted_model_equals_reference(family: str, name: str) -> None:
    tok, rest, meta = converted_tokenizer(family, name)
    images = rest["images"] * 2 - 1  # the reference takes [0, 1]; vistok [-1, 1]
    latents = tok.encoder(images)  # (b n d)
    want_latents = rearrange(rest["out:latents"], "b d 1 n -> b n d")
    assert (latents - want_latents).abs().max() < TOL
    ids = tok.quantizer(latents).ids  # (b n 1)
    assert torch.equal(ids, rearrange(rest["out:ids"], "b 1 n -> b n 1"))
    assert torch.equal(tok.encode(images).ids, ids)
    for k in meta["ks"]:
        pixels = (decode_unclamped(tok, ids, k) + 1) / 2  # back to the reference's [0, 1]
        assert (pixels - rest[f"out:pixels_k{k}"]).abs().max() < TOL, k
    clamped = tok.decode(tok.encode(images))  # the public path: the same pixels, clamped
    want = rest[f"out:pixels_k{tok.max_tokens}"].clamp(0, 1) * 2 - 1
    assert (clamped - want).abs().max() < 2 * TOL


@torch.no_grad()
def test_tiny_maskgit_vqgan_equals_reference() -> None:
    sources, rest, meta = load("maskgit_vqgan_tiny")
    conf = meta["config"]
    vqgan = Source("vqgan", sources["vqgan"])
    state = map_vqgan(vqgan, "decoder.", "quantize.embedding.weight", "")
    assert vqgan.unused() == []
    decoder = MaskGITVQGANDecoder(
        codebook_size=1024,
        code_dim=conf["z_channels"],
        channels=conf["hidden_channels"],
        channel_mult=conf["channel_mult"],
        num_res_blocks=conf["num_res_blocks"],
    ).eval()
    decoder.load_state_dict(state, strict=True)
    pixels = (decoder.decode_ids(rest["ids"]) + 1) / 2  # converter folds [0, 1] -> [-1, 1]
    assert pixels.shape == rest["out:pixels"].shape
    assert (pixels - rest["out:pixels"]).abs().max() < TOL


def test_converted_legacy_titok_exports_to_onnx(tmp_path: Path) -> None:
    """The legacy decoder's MaskGIT-VQGAN (its upsampling a stride-2 transposed conv) runs in
    ONNX Runtime with the ids and pixels of the PyTorch model that matched the reference."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from tokenizers_vis.deploy import OnnxTokenizer, export_onnx

    tok, rest, _ = converted_tokenizer("titok", "titok_legacy")
    tok.save_pretrained(tmp_path / "converted")
    runner = OnnxTokenizer(export_onnx(tmp_path / "converted", tmp_path / "onnx"), threads=1)
    images = rest["images"] * 2 - 1  # (b 3 h w)
    with torch.no_grad():
        ids = tok.encode(images).ids  # (b n 1)
        pixels = tok.decode(ids)  # (b 3 h w)
    assert np.array_equal(runner.encode(images.numpy()), ids.numpy())
    assert np.abs(runner.decode(ids.numpy()) - pixels.numpy()).max() < TOL


def test_one_d_piece_decodes_prefixes_and_titok_does_not_train_tail_drop() -> None:
    tok, _, _ = converted_tokenizer("one_d_piece", "one_d_piece_legacy")
    assert tok.config["token_drop"] == {
        "name": "tail_drop",
        "sampling": "uniform",
        "drop_prob": 1.0,
    }
    tok, _, _ = converted_tokenizer("titok", "titok_legacy")
    assert tok.config["token_drop"]["drop_prob"] == 0.0
    assert tok.config["encoder"]["code_head"] == "raw_reshape"


def test_wrong_family_names_the_keys_that_tell() -> None:
    sources, _, meta = load("titok_vq8k")
    with pytest.raises(ConversionError, match="convert it as titok"):  # a VQ8k pixel head
        FAMILIES["one_d_piece"].convert(sources, meta["config"])
    foreign = {"model": {"encoder.module_dict.enc_seq_emb.weight": torch.zeros(2)}}
    with pytest.raises(ConversionError, match="latent_tokens"):
        FAMILIES["titok"].convert(foreign, None)
    sources, _, meta = load("one_d_piece_legacy")
    with pytest.raises(ConversionError, match="one_d_piece"):
        FAMILIES["titok"].convert(sources, meta["config"])


def test_missing_vqgan_and_unmapped_tensors_are_reported() -> None:
    sources, _, meta = load("titok_legacy")
    with pytest.raises(ConversionError, match="vqgan"):
        FAMILIES["titok"].convert({"model": sources["model"]}, meta["config"])
    extra = {**sources["model"], "decoder.extra_head.weight": torch.zeros(3)}
    converted = FAMILIES["titok"].convert({**sources, "model": extra}, meta["config"])
    assert converted.unmapped == ["model:decoder.extra_head.weight"]
    assert converted.preset is None  # tiny widths are no published preset
    odp, _, odp_meta = load("one_d_piece_legacy")  # its VQGAN is inside the checkpoint
    with pytest.raises(ConversionError, match="leave out the 'vqgan' source"):
        FAMILIES["one_d_piece"].convert({**odp, "vqgan": sources["vqgan"]}, odp_meta["config"])
    broken = {k: v for k, v in sources["model"].items() if k != "decoder.positional_embedding"}
    with pytest.raises(ConversionError, match="decoder.positional_embedding"):
        FAMILIES["titok"].convert({**sources, "model": broken}, meta["config"])


def test_heads_need_a_config_for_unpublished_widths() -> None:
    sources, _, _ = load("titok_vq8k")
    with pytest.raises(ConversionError, match="config.json"):
        FAMILIES["titok"].convert(sources, None)


# Parameter counts of the reference models at the published sizes (bytedance/1d-tokenizer @
# 942a96f, turingmotors/One-D-Piece @ 473665d; counted by tools/golden/titok.py --full-size).
REFERENCE_PARAMS = {
    "titok_l32_vq": 641_054_735,
    "titok_b64_vq": 204_814_095,
    "titok_s128_vq": 83_674_639,
    "titok_bl64_vq8k": 390_016_148,
    "titok_bl128_vq8k": 390_179_988,
    "titok_sl256_vq8k": 330_260_884,
    "one_d_piece_s256": 83_871_247,
    "one_d_piece_b256": 205_256_463,
    "one_d_piece_l256": 641_742_863,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_published_presets_have_the_reference_parameter_count(name: str) -> None:
    with torch.device("meta"):
        tok = Tokenizer(**PRESETS[name])
    ours = sum(p.numel() for p in tok.parameters())
    enc, dec = tok.encoder, tok.decoder
    width_e, width_d = enc.patch_positions.shape[-1], dec.patch_queries.shape[-1]
    # Folded at conversion: the encoder's latent-token positions and class-row position, the
    # decoder's mask token and class-row position; added: our (frozen) tail-drop mask token.
    folded = tok.max_tokens * width_e + width_e + 2 * width_d
    assert ours == REFERENCE_PARAMS[name] - folded + tok.quantizer.dim
