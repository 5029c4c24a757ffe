"""Factorized codebooks: G = 1 is the plain quantizer, disentanglement, semantic alignment, and
every G > 1 consumer (refinement, usage, rate, probe, export)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

import tokenizers_vis as tv
from tokenizers_vis.losses.feature_cache import FeatureCache
from tokenizers_vis.losses.semantic import SemanticAlignment
from tokenizers_vis.losses.teachers import build_teacher
from tokenizers_vis.metrics.probe import ridge_probe, token_features
from tokenizers_vis.metrics.rate import token_bytes
from tokenizers_vis.metrics.usage import codebook_usage
from tokenizers_vis.quantizers.factorized import FactorizedQuantizer, disentanglement
from tokenizers_vis.registry import QUANTIZERS
from tokenizers_vis.training.export import submodule_state
from tokenizers_vis.training.loss_weights import DEFAULT_LOSS_WEIGHTS
from tokenizers_vis.training.system import TokenizerSystem

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
VQ = {"name": "vq", "codebook_size": 32, "dim": 6}
PLAIN = [
    {"name": "fsq", "levels": [8, 5, 3]},
    VQ,
    {**VQ, "normalize": False},
    {**VQ, "ema_decay": 0.9, "dead_code_threshold": 0.5},
]
# A random-init timm convnet: a teacher for tests that loads nothing and downloads nothing.
TEST_TEACHER = {"name": "timm", "model": "test_efficientnet", "image_size": 32}
SEMANTIC = {"codebook": 1, "teacher": TEST_TEACHER, "width": 32}


def factorized(*specs: dict, **kwargs) -> FactorizedQuantizer:
    return QUANTIZERS.build({"name": "factorized", "quantizers": list(specs), **kwargs})


@pytest.mark.parametrize("adapter", ["mlp", "linear", "none"])
@pytest.mark.parametrize("spec", PLAIN, ids=str)
def test_g1_equals_plain_quantizer_bit_for_bit(spec: dict, adapter: str) -> None:
    plain = QUANTIZERS.build(spec)
    fq = factorized(spec, adapter=adapter)
    fq.quantizers[0].load_state_dict(plain.state_dict())  # the same weights
    latents = torch.randn(3, 7, plain.dim)
    for mode in ("eval", "train", "train"):  # train twice: EMA codebooks must move alike
        plain.train(mode == "train"), fq.train(mode == "train")
        torch.manual_seed(1)  # dead-code restarts draw from the global generator
        a = plain(latents)
        torch.manual_seed(1)
        b = fq(latents)
        assert torch.equal(a.ids, b.ids) and torch.equal(a.codes, b.codes)
        assert a.losses.keys() == b.losses.keys()
        assert all(torch.equal(a.losses[k], b.losses[k]) for k in a.losses)
    assert torch.equal(plain.ids_to_codes(a.ids), fq.ids_to_codes(b.ids))
    assert fq.vocab_sizes == plain.vocab_sizes and fq.dim == plain.dim


def test_g1_tokenizer_on_plain_weights_matches(images16: torch.Tensor) -> None:
    plain = tv.create_tokenizer("tiny_cpu_vq").eval()
    spec = {"name": "factorized", "quantizers": [plain.config["quantizer"]]}
    fact = tv.create_tokenizer("tiny_cpu_vq", quantizer=spec).eval()
    state = {
        k.replace("quantizer.", "quantizer.quantizers.0."): v for k, v in plain.state_dict().items()
    }
    missing, unexpected = fact.load_state_dict(state, strict=False)
    assert not unexpected and all(".adapters." in k for k in missing)
    a, b = plain.encode(images16), fact.encode(images16)
    assert torch.equal(a.ids, b.ids)
    assert torch.equal(plain.decode(a), fact.decode(b))


def test_layout_and_errors() -> None:
    fq = factorized(VQ, {"name": "fsq", "levels": [8, 5]}, {**VQ, "codebook_size": 7})
    assert fq.dim == 6 + 2 + 6 and fq.vocab_sizes == (32, 40, 7)
    out = fq(torch.randn(2, 5, fq.dim))
    assert out.ids.shape == (2, 5, 3) and [p.shape[-1] for p in out.parts] == [6, 2, 6]
    assert torch.equal(out.codes, torch.cat(out.parts, -1))
    assert "quantizer/disentangle" not in out.losses  # unequal sub-dims: no cosine between them
    assert {"quantizer/commit/0", "quantizer/commit/2"} <= set(out.stats)  # FSQ has no losses
    commit = (out.stats["quantizer/commit/0"] + out.stats["quantizer/commit/2"]) / 2
    torch.testing.assert_close(out.losses["quantizer/commit"].detach(), commit)
    with pytest.raises(ValueError, match="out of range"):
        fq.ids_to_codes(torch.tensor([[[0, 0, 7]]]))
    with pytest.raises(ValueError, match=r"shape \(b, n, 3\)"):
        fq.ids_to_codes(torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="equal sub-codebook dims"):
        factorized(VQ, {"name": "fsq", "levels": [8, 5]}, combine="sum")
    with pytest.raises(KeyError, match="known: .*factorized"):
        factorized({"name": "nope"})
    summed = factorized(VQ, VQ, VQ, combine="sum")
    out = summed(torch.randn(2, 5, 6))
    torch.testing.assert_close(out.codes, sum(out.parts), rtol=0, atol=1e-6)


def test_gradients_reach_every_adapter_and_codebook() -> None:
    fq = factorized(VQ, VQ, {"name": "fsq", "levels": [5, 5, 5, 5, 5, 5]}).train()
    with torch.no_grad():  # as after a step: the zero-initialised last layers are no longer zero
        for adapter in fq.adapters:
            adapter.residual[-1].weight.normal_(0, 0.1)
    latents = torch.randn(2, 5, fq.dim, requires_grad=True)
    out = fq(latents)
    (out.codes.square().sum() + sum(out.losses.values())).backward()
    for name, param in fq.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert latents.grad.abs().sum() > 0


def test_disentanglement_values() -> None:
    e = torch.eye(4)
    a, b, c = (e[i].expand(2, 3, 4) for i in range(3))
    assert disentanglement([a, b, c]).item() == 0
    assert disentanglement([a, -a]).item() == pytest.approx(1.0)
    mixed = disentanglement([a, a, b])  # pairs: (a, a) = 1, (a, b) = 0, (a, b) = 0
    assert mixed.item() == pytest.approx(1 / 3)


def fit(root: Path, overrides: list[str]) -> list[dict[str, str]]:
    from tokenizers_vis.cli import train

    args = ["fit"]
    for config in ("tokenizer/tiny_cpu_fsq.yaml", "data/emoji16.yaml", "trainer/test.yaml"):
        args += ["--config", str(REPO / "configs" / config)]
    args += ["--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir"]
    args += [str(root), "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"]
    with mock.patch.object(sys, "argv", ["vistok"]):
        assert train.main([*args, *overrides]) == 0
    (run,) = sorted((root / "logs").glob("version_*"))
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_disentanglement_falls_during_a_real_fit(tmp_path: Path) -> None:
    rows = fit(
        tmp_path,
        ["--model.tokenizer", "tiny_cpu_fvq", "--model.loss_weights.quantizer/disentangle", "1"]
        + ["--trainer.max_steps", "40", "--trainer.limit_val_batches", "0"],
    )
    values = [
        float(r["train/quantizer/disentangle"])
        for r in rows
        if r.get("train/quantizer/disentangle")
    ]
    assert len(values) == 40
    first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
    # Measured: 0.32 -> 0.02 in 40 steps; with its weight 0 it rises to 0.54 instead.
    assert last < 0.5 * first, (first, last)


def semantic_weights(**weights: float) -> dict[str, float]:
    return {**DEFAULT_LOSS_WEIGHTS, "semantic/cosine": 1.0, **weights}


def semantic_system(**weights: float) -> TokenizerSystem:
    return TokenizerSystem(
        "tiny_cpu_fvq", loss_weights=semantic_weights(**weights), semantic=SEMANTIC, warmup_steps=1
    )


def test_semantic_gradients_reach_aligned_adapter_not_teacher(images16: torch.Tensor) -> None:
    system = semantic_system()
    teacher = system._teacher[0].teacher
    tok = system.tokenizer.train()
    with torch.no_grad():
        for adapter in tok.quantizer.adapters:
            adapter.residual[-1].weight.normal_(0, 0.1)
    out = tok(images16)
    terms = system.semantic_terms(out.quantized, images16, out.lengths)
    assert set(terms) == {"semantic/cosine"} and torch.isfinite(terms["semantic/cosine"])
    terms["semantic/cosine"].backward()
    grads = {n: p.grad for n, p in tok.quantizer.adapters.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("1."))
    assert all(g is None for n, g in grads.items() if n.startswith("0."))  # the other codebook
    assert all(p.grad is not None for p in system.semantic.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not any(k.startswith("_teacher") or "teacher" in k for k in system.state_dict())


def test_semantic_training_step_and_export(tmp_path: Path, images16: torch.Tensor) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    features = tmp_path / "teacher.safetensors"
    system = semantic_system(**{"quantizer/disentangle": 0.1})
    system._teacher[0].path = features  # = semantic: {cache_file: ...} in a config
    trainer = L.Trainer(
        accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        limit_val_batches=0,
    )  # fmt: skip
    head_before = [p.detach().clone() for p in system.semantic.parameters()]
    loader = DataLoader(TensorDataset(images16, torch.zeros(4)), batch_size=4)
    trainer.fit(system, loader)
    after = list(system.semantic.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(head_before, after, strict=True))
    cache = system._teacher[0]
    assert cache.misses == 4 and cache.hits == 8  # one teacher pass per image, then cached
    again = TokenizerSystem(
        "tiny_cpu_fvq",
        loss_weights=semantic_weights(),
        semantic={**SEMANTIC, "cache_file": str(features)},
    )
    assert len(again._teacher[0].store) == 4  # the next run starts with the features
    tok = tv.Tokenizer(**system.tokenizer.config)
    tok.load_state_dict(submodule_state(system.state_dict()), strict=True)  # head not exported
    tok.eval().save_pretrained(tmp_path / "m")
    loaded = tv.Tokenizer.from_pretrained(tmp_path / "m")
    a, b = tok.encode(images16, num_tokens=5), loaded.encode(images16, num_tokens=5)
    assert a.ids.shape == (4, 5, 2) and torch.equal(a.ids, b.ids)
    assert torch.equal(tok.decode(a), loaded.decode(b))


@pytest.mark.parametrize("loss", ["cosine", "contrastive"])
def test_alignment_loss_learns_a_mapping(loss: str) -> None:
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(16, 4, 3, generator=g)
    features = codes.flatten(1) @ torch.randn(12, 8, generator=g)  # a function of the codes
    head = SemanticAlignment(3, 8, num_tokens=4, width=32, loss=loss)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    values = []
    for _ in range(60):
        value = head(codes, features)[f"semantic/{loss}"]
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(value.item())
    assert values[-1] < 0.5 * values[0], values[::10]
    lengths = torch.tensor([1] * 16)
    moved = codes.clone()
    moved[:, 1:] += 1  # positions past each length must not matter
    torch.testing.assert_close(head.predict(codes, lengths), head.predict(moved, lengths))


def test_feature_cache_keys_on_pixels() -> None:
    calls = []

    def teacher(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x.flatten(1)[:, :5]

    cache = FeatureCache(teacher)
    images = torch.rand(3, 3, 4, 4) * 2 - 1
    first = cache(images)
    again = cache(torch.cat([images[:2], -images[2:]]))
    assert calls == [3, 1] and torch.equal(first[:2], again[:2])
    uncached = FeatureCache(teacher, max_entries=0)
    uncached(images), uncached(images)
    assert calls == [3, 1, 3, 3] and not uncached.store


def test_feature_file_carries_features_to_the_next_run_of_the_same_teacher(tmp_path) -> None:
    calls = []

    def teacher(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x.flatten(1)[:, :5] * 2

    path = tmp_path / "features" / "teacher.safetensors"
    images = torch.rand(3, 3, 4, 4) * 2 - 1
    first = FeatureCache(teacher, path=path, teacher_key="a")
    features = first(images)
    assert not path.exists()  # below SAVE_EVERY new entries: written on the first all-hit call
    first(images)
    assert path.is_file() and calls == [3]
    second = FeatureCache(teacher, path=path, teacher_key="a")
    assert torch.equal(second(images), features) and calls == [3]  # no teacher pass
    other = FeatureCache(teacher, path=path, teacher_key="b")  # another teacher: ignored
    other(images)
    assert calls == [3, 3]


def test_teacher_key_changes_with_the_weights_file_it_names(tmp_path) -> None:
    from tokenizers_vis.losses.teachers import teacher_key

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"a")
    spec = {"name": "timm", "model": "m", "weights": str(weights)}
    before = teacher_key(spec)
    weights.write_bytes(b"bb")
    assert teacher_key(spec) != before and teacher_key({"name": "inception"}) == teacher_key(
        {"name": "inception"}
    )


def test_inception_teacher_is_frozen_and_offline() -> None:
    teacher = build_teacher({"name": "inception", "resize": 75})
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    features = teacher(images)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training


def test_timm_teacher_loads_local_weights_strictly(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = build_teacher(TEST_TEACHER)
    save_file(source.net.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = build_teacher({**TEST_TEACHER, "weights": str(tmp_path / "w.safetensors")})
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(source(images), loaded(images))
    save_file({"stem.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="missing keys"):
        build_teacher({**TEST_TEACHER, "weights": str(tmp_path / "bad.safetensors")})


def test_downstream_understands_g2(images16: torch.Tensor) -> None:
    tok = tv.create_tokenizer("tiny_cpu_fvq").eval()
    assert tok.vocab_sizes == (64, 64)
    refined = tv.refine_tokens(tok, images16, num_tokens=6, steps=2)
    assert refined.ids.shape == (4, 6, 2)
    assert torch.equal(tv.refine_tokens(tok, images16, 6, steps=0).ids, tok.encode(images16, 6).ids)
    mixed = tok.encode(images16, num_tokens=torch.tensor([1, 8, 3, 2]))
    assert mixed.ids.shape == (4, 8, 2) and int(mixed.ids[0, 1:].abs().sum()) == 0
    usage = codebook_usage(mixed.ids, tok.vocab_sizes, mixed.lengths)
    assert usage["usage"].shape == (2,) and usage["perplexity_per_position"].shape == (8, 2)
    assert usage["tokens_per_position"].tolist() == [4, 3, 2, 1, 1, 1, 1, 1]
    assert token_bytes(64, (64, 64)) == 96.0 == token_bytes(32, (4096, 4096))
    features = token_features(tok, images16, num_tokens=3)
    assert [f.shape for f in features] == [(4, 3 * 4), (4, 3 * 4)]


def test_ridge_probe_separates_and_sees_chance() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 10, generator=g) * 3
    labels = [torch.randint(0, 3, (n,), generator=g) for n in (300, 100, 100)]
    data = [(centres[y] + torch.randn(len(y), 10, generator=g), y) for y in labels]
    result = ridge_probe(*data, num_classes=3)
    assert result["accuracy"] > 0.95 and result["l2"] in (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
    noise = [(torch.randn(len(y), 10, generator=g), y) for y in labels]
    assert ridge_probe(*noise, num_classes=3)["accuracy"] < 0.5


def test_codec_file_round_trips_g2_ids(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from tokenizers_vis import codec
    from tokenizers_vis.data.transforms import to_tensor

    tv.create_tokenizer("tiny_cpu_fvq").eval().save_pretrained(tmp_path / "m")
    c = codec.Codec.from_pretrained(tmp_path / "m", device="cpu")
    pixels = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    data = c.encode_image(Image.fromarray(pixels), num_tokens=5)
    header, payload = codec.read_header(data)
    assert header.vocab_sizes == (64, 64) and payload == 8  # 5 tokens x (6 + 6) bits
    x = to_tensor(pixels)[None]  # (1 3 16 16)
    assert np.array_equal(np.asarray(c.read(data).ids)[0, :5], c.tokenizer.encode(x, 5).ids[0])
    assert c.decode_bytes(data).size == (16, 16)
