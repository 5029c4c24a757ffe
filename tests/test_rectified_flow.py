"""The rectified-flow decoder: velocity net, flow-matching training, guidance, sampling, latent
space, REPA, and the training system's decoder-only mode (init_from_parts + freeze)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from einops import rearrange

from tokenizers_vis.decoders.rectified_flow import RectifiedFlowDecoder
from tokenizers_vis.layers.repa import repa_cosine_distance
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.registry import DECODERS
from tokenizers_vis.tokenizer import Tokenizer, Tokens
from tokenizers_vis.training.system import TokenizerSystem, architecture

REPO = Path(__file__).resolve().parents[1]
SHARED = {"image_size": 16, "num_tokens": 6, "in_dim": 5}
RF = {"name": "rectified_flow", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 2}

pytestmark = pytest.mark.usefixtures("one_thread")


def wake(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every weight: adaLN-Zero starts as the identity with a zero head, so a fresh
    network ignores its condition entirely (by design) and these tests would mean nothing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return module


def decoder(**overrides) -> RectifiedFlowDecoder:
    return wake(DECODERS.build({**RF, **overrides}, **SHARED)).eval()


def inputs(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, 16, 16, generator=g)
    return x, torch.rand(b, generator=g), torch.randn(b, 6, 5, generator=g)


def test_shapes_and_named_loss() -> None:
    dec = decoder()
    x, t, tokens = inputs()
    assert dec.velocity(x, t, tokens).shape == (2, 3, 16, 16)
    out = dec.train()(tokens, None, images=x.clamp(-1, 1))
    assert out.images.shape == (2, 3, 16, 16) and set(out.losses) == {"flow/mse"}
    assert out.losses["flow/mse"].dim() == 0 and out.losses["flow/mse"] > 0
    for sampler in ("euler", "heun"):
        dec.sampler = sampler
        assert dec.sample(tokens, num_steps=3).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="images"):
        dec(tokens, None)


def test_tokens_change_the_output_and_a_hidden_tail_does_not() -> None:
    dec = decoder()
    x, t, tokens = inputs()
    other = tokens.clone()
    other[:, 3:] = torch.randn(2, 3, 5)
    assert (dec.velocity(x, t, tokens) - dec.velocity(x, t, other)).abs().max() > 1e-3
    mask = torch.tensor([[True] * 3 + [False] * 3] * 2)
    torch.testing.assert_close(dec.velocity(x, t, tokens, mask), dec.velocity(x, t, other, mask))
    g = torch.Generator().manual_seed(0)
    assert not torch.allclose(
        dec.sample(tokens, None, 2, generator=g),
        dec.sample(other, None, 2, generator=g.manual_seed(0)),
    )


def test_guidance_uses_the_null_condition_and_scale_one_is_conditional() -> None:
    dec = decoder()
    x, t, tokens = inputs()
    mask = torch.tensor([[True] * 2 + [False] * 4, [True] * 6])
    cond = dec.velocity(x, t, tokens, mask)
    null = dec.velocity(x, t, tokens, mask, drop=torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(dec.guided_velocity(x, t, tokens, mask, 1.0), cond)
    guided = dec.guided_velocity(x, t, tokens, mask, 3.0)
    torch.testing.assert_close(guided, null + 3.0 * (cond - null), atol=1e-5, rtol=1e-5)
    assert (guided - cond).abs().max() > 1e-3
    # The null token is what guidance reads: moving it moves guided samples only.
    sample = {s: dec.sample(tokens, mask, 2, guidance_scale=s) for s in (1.0, 3.0)}
    with torch.no_grad():
        dec.null_token.add_(torch.randn(dec.null_token.shape))
    torch.testing.assert_close(dec.sample(tokens, mask, 2, guidance_scale=1.0), sample[1.0])
    assert not torch.allclose(dec.sample(tokens, mask, 2, guidance_scale=3.0), sample[3.0])


def test_condition_dropout_trains_the_null_token() -> None:
    dec = decoder(cond_dropout=0.5).train()
    x, _, tokens = inputs(8)
    out = dec(tokens, None, images=x.clamp(-1, 1), generator=torch.Generator().manual_seed(0))
    out.losses["flow/mse"].backward()
    assert dec.null_token.grad.abs().sum() > 0
    dec.zero_grad(set_to_none=True)
    dec.cond_dropout = 0.0  # no sample dropped: the token still gets a (zero) gradient, for DDP
    dec(tokens, None, images=x.clamp(-1, 1)).losses["flow/mse"].backward()
    assert dec.null_token.grad is not None and dec.null_token.grad.abs().sum() == 0


def test_generator_reproduces_and_another_differs() -> None:
    dec = decoder()
    _, _, tokens = inputs()

    def run(seed: int) -> torch.Tensor:
        return dec.sample(tokens, num_steps=3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.allclose(run(0), run(1))
    assert torch.equal(dec.sample(tokens, num_steps=3), run(0))  # no generator: seed 0
    # Eval-mode losses use a fixed seed too (comparable validation); training draws afresh.
    images = inputs(seed=3)[0].clamp(-1, 1)
    assert torch.equal(
        dec(tokens, None, images).losses["flow/mse"], dec(tokens, None, images).losses["flow/mse"]
    )


def test_schedulers_grid_and_evaluations() -> None:
    dec = decoder()
    euler = dec.scheduler(4, torch.device("cpu"))
    torch.testing.assert_close(euler.sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    calls = []
    dec.final.register_forward_hook(lambda *_: calls.append(1))
    _, _, tokens = inputs()
    for sampler, evaluations in (("euler", 4), ("heun", 7)):  # Heun: 2N - 1
        dec.sampler, calls[:] = sampler, []
        dec.sample(tokens, num_steps=4)
        assert len(calls) == evaluations, sampler
    dec.sampler, calls[:] = "euler", []
    dec.sample(tokens, num_steps=2, guidance_scale=2.0)
    assert len(calls) == 2  # conditional and null in one batch per step


def test_tiny_fit_flow_loss_falls(images16: torch.Tensor) -> None:
    torch.manual_seed(0)
    dec = DECODERS.build({**RF, "width": 48}, **SHARED)
    tokens = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(1))
    images, codes = images16.repeat(4, 1, 1, 1), tokens.repeat(4, 1, 1)  # (16 3 16 16), (16 6 5)

    def held_out() -> float:  # eval mode: fixed t and noise
        with torch.no_grad():
            return dec.eval()(codes, None, images).losses["flow/mse"].item()

    before = held_out()
    opt = torch.optim.AdamW(dec.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(2)
    for _ in range(60):
        loss = dec.train()(codes, None, images, generator=g).losses["flow/mse"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out()
    assert after < 0.6 * before, (before, after)


def tiny_rf_spec(**decoder_overrides) -> dict:
    return preset_spec("tiny_cpu_fsq", decoder={**RF, **decoder_overrides})


def test_tokenizer_decode_mixed_lengths_and_round_trip(tmp_path: Path) -> None:
    tok = Tokenizer(**tiny_rf_spec()).eval()
    wake(tok.decoder)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    ids = tok.encode(images).ids  # (3 8 1)
    lengths = torch.tensor([1, 8, 4])
    g = torch.Generator()
    mixed = tok.decode(Tokens(ids, lengths), num_steps=3, generator=g.manual_seed(5))
    assert mixed.shape == (3, 3, 16, 16) and mixed.abs().max() <= 1
    for i, k in enumerate(lengths.tolist()):  # same noise (same batch position), one k for all
        alone = tok.decode(
            Tokens(ids, torch.full((3,), k)), num_steps=3, generator=g.manual_seed(5)
        )
        torch.testing.assert_close(mixed[i], alone[i], atol=1e-5, rtol=1e-5)
    loaded = Tokenizer.from_pretrained(tok.save_pretrained(tmp_path / "rf"))
    assert torch.equal(loaded.decode(Tokens(ids[:, :4]), 2), tok.decode(Tokens(ids[:, :4]), 2))


def test_latent_space_with_a_local_autoencoder(tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    vae.save_pretrained(tmp_path / "vae")
    tok = Tokenizer(**tiny_rf_spec(vae=str(tmp_path / "vae"), patch_size=2))
    dec = tok.decoder
    assert (dec.channels, dec.size) == (4, 8)  # 16 px, one 2x downsampling
    assert not any("vae" in k for k in tok.state_dict())  # reloads from its own directory
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = tok.train()(images)
    assert out.images.shape == (2, 3, 16, 16) and not out.images.requires_grad
    out.losses["flow/mse"].backward()
    assert dec.final.linear.weight.grad is not None
    tok.eval()
    decoded = tok.decode(tok.encode(images, num_tokens=3), num_steps=2)
    assert decoded.shape == (2, 3, 16, 16)
    loaded = Tokenizer.from_pretrained(tok.save_pretrained(tmp_path / "tok"))
    assert torch.equal(loaded.decode(tok.encode(images, num_tokens=3), num_steps=2), decoded)


class StubTeacher(torch.nn.Module):
    """A fixed random conv: images (b 3 16 16) -> (b 8 4 4) feature maps."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 4, stride=4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


def test_repa_features_train_the_projector_and_the_blocks() -> None:
    dec = decoder(repa_layer=1, repa_dim=8).train()
    x, _, tokens = inputs()
    out = dec(tokens, None, images=x.clamp(-1, 1))
    assert dec.feature_dim == 8 and out.features.shape == (2, 8, 4, 4)  # on the 4x4 patch grid
    stub = StubTeacher().requires_grad_(False)
    projected = rearrange(out.features, "b f gh gw -> b (gh gw) f")
    term = repa_cosine_distance(projected, stub(x.clamp(-1, 1)), (4, 4))
    assert 0 <= term <= 2
    term.backward()
    assert dec.repa_projector.mlp.fc1.weight.grad.abs().sum() > 0
    assert dec.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert dec.blocks[1].attn.qkv.weight.grad is None  # read after block 1
    plain = decoder()
    assert plain.repa_projector is None and plain.feature_dim is None  # off by default
    assert plain(tokens, None, images=x.clamp(-1, 1)).features is None


def test_repa_distance_per_patch_and_pooled() -> None:
    target = torch.randn(2, 8, 4, 4)
    projected = target.flatten(2).transpose(1, 2)  # (2 16 8) row-major patches
    projected = projected - projected.mean((0, 1))  # the centred target itself
    assert repa_cosine_distance(projected, target, (4, 4)) < 1e-5
    assert repa_cosine_distance(-projected, target, (4, 4)) > 2 - 1e-5
    pooled = torch.randn(3, 8)
    same = (pooled - pooled.mean(0))[:, None].expand(3, 5, 8)
    assert repa_cosine_distance(same, pooled, (1, 5)) < 1e-5


def test_spec_sampling_settings_do_not_change_the_architecture() -> None:
    a = tiny_rf_spec()
    b = tiny_rf_spec(num_steps=8, sampler="heun", guidance_scale=2.0, cond_dropout=0.2)
    assert architecture(a) == architecture(b) and a != b
    with pytest.raises(ValueError, match="sampler"):
        Tokenizer(**tiny_rf_spec(sampler="dpm"))


@pytest.fixture
def pretrained(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    return Tokenizer(**preset_spec("tiny_cpu_fsq")).save_pretrained(tmp_path / "vit")


def test_decoder_only_mode_trains_only_the_decoder(pretrained: Path, images16) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    system = TokenizerSystem(
        tiny_rf_spec(),
        init_from=str(pretrained),
        init_from_parts=["encoder", "quantizer"],
        freeze=["encoder", "quantizer"],
        l1_weight=0.0,
        l2_weight=0.0,
        warmup_steps=1,
        eval_tokens=[1, 8],
    )
    source = Tokenizer.from_pretrained(pretrained)
    for part in ("encoder", "quantizer"):
        theirs = getattr(source, part).state_dict()
        assert all(
            torch.equal(v, theirs[k])
            for k, v in getattr(system.tokenizer, part).state_dict().items()
        )
    assert isinstance(system.tokenizer.decoder, RectifiedFlowDecoder)
    before = {k: v.clone() for k, v in system.tokenizer.state_dict().items()}
    modes = []
    system.tokenizer.encoder.register_forward_pre_hook(lambda m, _: modes.append(m.training))
    data = TensorDataset(images16.repeat(2, 1, 1, 1), torch.zeros(8))
    trainer = L.Trainer(
        accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
        val_check_interval=3, check_val_every_n_epoch=None, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(system, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    after = system.tokenizer.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"decoder", "token_drop"}
    assert modes and not any(modes)  # the frozen encoder never ran in training mode
    (optimizer,) = trainer.optimizers
    trainable = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert trainable == sum(p.numel() for n, p in system.tokenizer.named_parameters()
                            if not n.startswith(("encoder.", "quantizer.")))  # fmt: skip
    logged = trainer.callback_metrics
    assert {"train/flow/mse", "val/psnr@1", "val/psnr@8", "val/loss"} <= set(logged)


def test_partial_warm_start_checks_only_its_parts(pretrained: Path) -> None:
    other_encoder = preset_spec("tiny_cpu_fsq", encoder={"depth": 2}, decoder=RF)
    with pytest.raises(ValueError, match="different architecture"):
        TokenizerSystem(other_encoder, init_from=str(pretrained), init_from_parts=["encoder"])
    TokenizerSystem(other_encoder, init_from=str(pretrained), init_from_parts=["quantizer"])
    with pytest.raises(ValueError, match="unknown parts"):
        TokenizerSystem(tiny_rf_spec(), freeze=["encodr"])
    with pytest.raises(ValueError, match="needs init_from"):
        TokenizerSystem(tiny_rf_spec(), init_from_parts=["encoder"])


def test_repa_in_the_system_with_a_local_timm_teacher() -> None:
    teacher = {"name": "timm", "model": "test_vit"}  # random init: tests only; 64 features
    with pytest.raises(ValueError, match="repa_dim"):
        TokenizerSystem(tiny_rf_spec(repa_layer=1), repa_teacher=teacher)
    system = TokenizerSystem(tiny_rf_spec(repa_layer=1, repa_dim=64), repa_teacher=teacher)
    assert all(k.startswith("tokenizer.") for k in system.state_dict())
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = system.tokenizer.train()(images)
    assert "repa/cosine_distance" not in out.losses  # the system owns the term and its teacher
    terms = {**out.losses, **system.repa_terms(out.features, images)}
    assert 0 <= terms["repa/cosine_distance"] <= 2
    weighted = system.weighted(terms)
    expected = terms["flow/mse"] + 0.5 * terms["repa/cosine_distance"]
    torch.testing.assert_close(weighted, expected)


def test_emoji_configs_build_both_modes() -> None:
    for name, frozen in (("emoji32_fsq_rf_decoder", True), ("emoji32_fsq_rf", False)):
        config = yaml.safe_load((REPO / "configs" / "tokenizer" / f"{name}.yaml").read_text())
        model = {k: v for k, v in config["model"].items() if k != "optimizer"}
        system = TokenizerSystem(**model)
        assert isinstance(system.tokenizer.decoder, RectifiedFlowDecoder)
        assert system.hparams.l1_weight == 0 and system.hparams.flow_weight == 1
        params = dict(system.tokenizer.encoder.named_parameters())
        assert all(not p.requires_grad for p in params.values()) == frozen
        if frozen:  # the shipped emoji32's encoder: the same tokens decode both ways
            shipped = Tokenizer.from_pretrained("emoji32").encoder.state_dict()
            assert all(torch.equal(params[k], shipped[k]) for k in params)


def test_tokenizer_decode_passes_guidance_and_a_deterministic_decoder_ignores_it() -> None:
    tok = Tokenizer(**tiny_rf_spec(cond_dropout=0.5)).eval()
    wake(tok.decoder)
    ids = tok.encode(torch.rand(2, 3, 16, 16) * 2 - 1, num_tokens=4).ids  # (2 4 1)

    def decode(scale: float | None) -> torch.Tensor:
        g = torch.Generator().manual_seed(1)
        return tok.decode(Tokens(ids), num_steps=2, generator=g, guidance_scale=scale)

    assert torch.equal(decode(None), decode(1.0))  # the spec's default scale is 1
    assert not torch.allclose(decode(1.0), decode(3.0))  # guidance reaches the sampler
    vit = Tokenizer(**preset_spec("tiny_cpu_fsq")).eval()
    plain = vit.decode(Tokens(ids))
    assert torch.equal(plain, vit.decode(Tokens(ids), guidance_scale=3.0, num_steps=7))
    assert tok.decoder.generative and not vit.decoder.generative
