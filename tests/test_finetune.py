"""Fine-tuning the shipped tokenizer on a folder of your own images: the README's command.

    vistok train fit --config configs/tokenizer/emoji32_fsq.yaml --config configs/data/emoji32.yaml
        --config configs/trainer/cpu.yaml --model.init_from emoji32 --data.train_data folder:DIR
    vistok export runs/finetune/checkpoints/last.ckpt my_tok

Run in-process with configs/trainer/test.yaml in place of cpu.yaml (10 steps at batch 4, EMA 0.9)
on 8 seeded PNGs; validation stays on the emoji val split, as in the README.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from tokenizers_vis.cli import main as cli
from tokenizers_vis.cli import train
from tokenizers_vis.data.folder import FolderDataset
from tokenizers_vis.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("tokenizer/emoji32_fsq.yaml", "data/emoji32.yaml", "trainer/test.yaml")
STEPS = 10  # test.yaml checkpoints every 10 steps

pytestmark = pytest.mark.usefixtures("one_thread")


def write_images(folder: Path, n: int = 8, seed: int = 0) -> Path:
    """n seeded PNGs, 40x48 (not square, not 32: the data path crops and resizes): a colour
    gradient and a disc each, so they look nothing like emoji on white."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:40, 0:48] / 40.0  # (40 48)
    for i in range(n):
        a, b = rng.uniform(0, 255, (2, 3))  # (3,) colours
        image = a * xx[..., None] + b * (1 - yy[..., None]) / 2  # (40 48 3)
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 1.0), rng.uniform(0.1, 0.3)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 255, 3)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"photo_{i}.png")
    return folder


def finetune_args(folder: str, root: Path) -> list[str]:
    """The README's command with the test trainer config and a run folder under `root`."""
    args = ["fit", *[a for c in CONFIGS for a in ("--config", str(REPO / "configs" / c))]]
    args += ["--model.init_from", "emoji32", "--data.train_data", f"folder:{folder}"]
    args += ["--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir"]
    return [*args, str(root), "--trainer.max_steps", str(STEPS), "--data.batch_size", "4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-step fine-tune of emoji32 on 8 images, exported; returns the run's root."""
    root = tmp_path_factory.mktemp("finetune")
    folder = write_images(root / "my_images")
    # The 90/5/5 path-hash split must leave a training batch (drop_last) in 8 files.
    assert len(FolderDataset(folder, "train", size=32)) >= 4
    with mock.patch.object(sys, "argv", ["vistok"]):  # LightningCLI warns about pytest's argv
        assert train.main(finetune_args(str(folder), root)) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    assert cli.main(["export", str(ckpt), str(root / "my_tok")]) == 0
    return root


def test_finetune_trains_from_the_shipped_weights(run: Path) -> None:
    shipped = Tokenizer.from_pretrained("emoji32").state_dict()
    tuned = Tokenizer.from_pretrained(run / "my_tok").state_dict()
    assert tuned.keys() == shipped.keys()
    change = {k: (tuned[k] - shipped[k]).abs().max().item() for k in shipped}
    # It trained: every tensor moved. The LR warms up over 200 steps, so 10 Adam steps move each
    # weight by ~1e-4 (measured 8e-5 to 9e-5 after EMA); an untouched copy moves by 0.
    assert min(change.values()) > 1e-5, min(change.items(), key=lambda kv: kv[1])
    # ... starting from emoji32, not from scratch: 10 steps move the weights a little, while a
    # fresh initialisation differs from them by about the weights' own size.
    moved = sum((tuned[k] - shipped[k]).norm() ** 2 for k in shipped) ** 0.5
    size = sum(shipped[k].norm() ** 2 for k in shipped) ** 0.5
    assert moved < 0.05 * size, (moved, size)
    extra = json.loads((run / "my_tok" / "config.json").read_text())["extra"]
    assert extra["init_from"] == "emoji32" and extra["global_step"] == STEPS
    assert extra["total_steps"] == 7700 + STEPS  # emoji32's steps carried on


def test_finetune_loss_is_finite_and_images_were_the_folders(run: Path) -> None:
    (log,) = sorted((run / "logs").glob("version_*/metrics.csv"))
    with open(log, newline="") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    hparams = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)[
        "datamodule_hyper_parameters"
    ]
    assert hparams["train_data"] == f"folder:{run / 'my_images'}"


def test_finetune_on_a_missing_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no_such_folder"
    with mock.patch.object(sys, "argv", ["vistok"]):
        assert train.main(finetune_args(str(missing), tmp_path)) == 2
    err = capsys.readouterr().err
    assert "vistok train: error:" in err and f"{missing} is not a directory" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()
