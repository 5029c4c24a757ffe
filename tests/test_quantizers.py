"""Contract tests over every registered quantizer, plus FSQ / VQ specifics."""

from __future__ import annotations

import math

import pytest
import torch

from tokenizers_vis.quantizers.fsq import FSQ
from tokenizers_vis.quantizers.vq import VectorQuantizer
from tokenizers_vis.registry import QUANTIZERS

# One small spec per registered quantizer; the coverage test below fails when one is missing.
SPECS = {
    "fsq": {"name": "fsq", "levels": [8, 5, 3]},
    "vq": {"name": "vq", "codebook_size": 32, "dim": 6},
    "factorized": {
        "name": "factorized",
        "quantizers": [{"name": "vq", "codebook_size": 32, "dim": 6}],
    },
}
VQ_VARIANTS = [
    SPECS["vq"],
    {"name": "vq", "codebook_size": 32, "dim": 6, "normalize": False},
    {"name": "vq", "codebook_size": 32, "dim": 6, "ema_decay": 0.9, "dead_code_threshold": 0.5},
]
# Factorized at G = 1, 2, 3: VQ and FSQ sub-codebooks of any sizes, both ways of combining.
FACTORIZED = [
    SPECS["factorized"],
    {
        "name": "factorized",
        "quantizers": [VQ_VARIANTS[2], {"name": "vq", "codebook_size": 8, "dim": 6}],
    },
    {
        "name": "factorized",
        "quantizers": [SPECS["fsq"], {"name": "vq", "codebook_size": 16, "dim": 3}, VQ_VARIANTS[1]],
        "adapter": "linear",
    },
    {
        "name": "factorized",
        "quantizers": [
            SPECS["fsq"],
            {"name": "fsq", "levels": [4, 4, 4]},
            {"name": "vq", "codebook_size": 16, "dim": 3},
        ],
        "combine": "sum",
    },
]
ALL = [SPECS["fsq"], {"name": "fsq", "levels": [8, 8, 8, 5, 5, 5]}, *VQ_VARIANTS, *FACTORIZED]


def test_every_registered_quantizer_has_a_spec() -> None:
    assert sorted(SPECS) == QUANTIZERS.names()


@pytest.mark.parametrize("spec", ALL, ids=lambda s: str(s))
def test_shapes_and_round_trip(spec: dict) -> None:
    q = QUANTIZERS.build(spec).eval()
    latents = torch.randn(3, 7, q.dim)
    out = q(latents)
    assert out.codes.shape == (3, 7, q.dim)
    assert out.ids.shape == (3, 7, len(q.vocab_sizes)) and out.ids.dtype == torch.int64
    assert int(out.ids.min()) >= 0 and bool((out.ids < torch.tensor(q.vocab_sizes)).all())
    torch.testing.assert_close(q.ids_to_codes(out.ids), out.codes, rtol=0, atol=1e-6)
    if spec["name"] == "vq":  # normalised codes are fixed points: re-quantizing keeps the ids
        assert torch.equal(q(q.ids_to_codes(out.ids)).ids, out.ids)


@pytest.mark.parametrize("spec", ALL, ids=lambda s: str(s))
def test_gradients_reach_latents(spec: dict) -> None:
    q = QUANTIZERS.build(spec).train()
    latents = torch.randn(2, 5, q.dim, requires_grad=True)
    out = q(latents)
    (out.codes.square().sum() + sum(out.losses.values(), torch.zeros(()))).backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0


@pytest.mark.parametrize("spec", ALL, ids=lambda s: str(s))
def test_save_load_gives_identical_outputs(spec: dict, tmp_path) -> None:
    from safetensors.torch import load_model, save_model

    q = QUANTIZERS.build(spec).train()
    q(torch.randn(4, 8, q.dim))  # one training step moves EMA codebooks off their init
    q.eval()
    save_model(q, str(tmp_path / "q.safetensors"))
    torch.manual_seed(123)  # a fresh build draws different random codebooks
    loaded = QUANTIZERS.build(spec)
    load_model(loaded, str(tmp_path / "q.safetensors"), strict=True)
    latents = torch.randn(3, 7, q.dim)
    a, b = q(latents), loaded.eval()(latents)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.codes, b.codes)
    assert torch.equal(q.ids_to_codes(a.ids), loaded.ids_to_codes(a.ids))


@pytest.mark.parametrize("spec", ALL, ids=lambda s: str(s))
def test_bf16_autocast_matches_fp32(spec: dict) -> None:
    q = QUANTIZERS.build(spec).eval()
    latents = torch.randn(4, 16, q.dim)
    reference = q(latents)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(latents.bfloat16())
    # bf16 inputs move latents slightly; what must hold is ids <-> codes agreement under autocast.
    assert out.codes.dtype == torch.float32
    torch.testing.assert_close(q.ids_to_codes(out.ids), out.codes, rtol=0, atol=1e-6)
    assert (out.ids == reference.ids).float().mean() > 0.8


def test_fsq_bijection_over_whole_codebook() -> None:
    q = FSQ([8, 5, 3, 2])
    ids = torch.arange(q.vocab_sizes[0]).view(1, -1, 1)
    codes = q.ids_to_codes(ids)
    assert codes.abs().max() <= 1
    assert torch.equal(q.codes_to_ids(codes), ids)
    assert len({tuple(c.tolist()) for c in codes[0]}) == q.vocab_sizes[0]


def test_fsq_flextok_levels_vocab() -> None:
    assert FSQ([8, 8, 8, 5, 5, 5]).vocab_sizes == (64_000,)
    assert math.prod([8, 8, 8, 8]) == FSQ([8, 8, 8, 8]).vocab_sizes[0] == 4096


def test_fsq_rejects_bad_levels() -> None:
    with pytest.raises(ValueError, match="levels"):
        FSQ([8, 1])


def test_check_ids_rejects_out_of_range() -> None:
    q = FSQ([4, 4])
    with pytest.raises(ValueError, match="out of range"):
        q.ids_to_codes(torch.tensor([[[16]]]))
    with pytest.raises(ValueError, match="shape"):
        q.ids_to_codes(torch.tensor([[1, 2]]))


def test_vq_ema_moves_codes_and_restarts_dead() -> None:
    q = VectorQuantizer(codebook_size=16, dim=4, ema_decay=0.5, dead_code_threshold=0.5).train()
    before = q.codebook.clone()
    latents = torch.randn(8, 4, 4) + 3.0
    for _ in range(5):
        out = q(latents)
    assert not torch.equal(before, q.codebook)
    assert "quantizer/dead_codes" in out.stats
    assert "quantizer/codebook" not in out.losses  # EMA replaces the codebook loss


def test_vq_losses_are_named_and_finite() -> None:
    q = VectorQuantizer(codebook_size=16, dim=4).train()
    out = q(torch.randn(2, 3, 4))
    assert set(out.losses) == {"quantizer/commit", "quantizer/codebook"}
    assert all(torch.isfinite(v) for v in out.losses.values())
