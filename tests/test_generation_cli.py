"""End to end on real emoji: `vistok pretokenize` -> token shards -> `vistok gpt fit` (LightningCLI,
in-process, CPU) -> `vistok gpt export` -> `vistok sample`, and the commands' user errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

import tokenizers_vis as tv
from generation import GPT
from generation.cli import gpt as gpt_cli
from generation.cli import pretokenize, sample
from generation.data import TokenDataModule, TokenShards
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.data import build_dataset

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 300
STEPS = 20

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random tokenizer (16 px, K = 8, vocab 125) and its emoji token shards."""
    root = tmp_path_factory.mktemp("gen")
    torch.manual_seed(0)  # whatever ran before in this process
    tok = tv.create_tokenizer("tiny_cpu_fsq")
    with torch.no_grad():  # a fresh model maps every image to one code: spread them out
        for param in tok.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    tok.save_pretrained(root / "tok")
    args = ["--model", str(root / "tok"), "--data", "emoji", "-o", str(root / "shards")]
    args += ["--flip", "--crops", "1", "--num-images", str(TRAIN_IMAGES), "--quiet"]
    assert pretokenize.main(args) == 0
    return root


@pytest.fixture(scope="module")
def run(work: Path) -> Path:
    """`vistok gpt fit` with configs/gpt/tiny.yaml for STEPS steps; returns the run's root."""
    root = work / "run"
    args = ["fit", "--config", str(REPO / "configs/gpt/tiny.yaml")]
    args += ["--data.root", str(work / "shards"), "--trainer.max_steps", str(STEPS)]
    args += ["--trainer.default_root_dir", str(root)]
    args += ["--trainer.logger.init_args.save_dir", str(root)]
    with mock.patch.object(sys, "argv", ["vistok"]):  # LightningCLI warns about pytest's argv
        assert gpt_cli.main(args) == 0
    return root


def metrics(run: Path) -> list[dict[str, str]]:
    (log,) = (run / "logs").glob("version_*/metrics.csv")
    with open(log, newline="") as f:
        return list(csv.DictReader(f))


def test_pretokenize_writes_shards(work: Path) -> None:
    info = json.loads((work / "shards" / "train.json").read_text())
    assert info["format"] == "vistok-tokens/1" and info["views"] == ["orig", "flip", "crop0"]
    assert info["count"] == 3 * TRAIN_IMAGES and info["max_tokens"] == 8
    assert info["vocab_sizes"] == [125] and info["num_classes"] == 9
    assert info["class_names"][0] == "smileys" and info["tokenizer"] == str(work / "tok")
    val = json.loads((work / "shards" / "val.json").read_text())
    assert val["views"] == ["orig"]  # no augmentation on val
    assert val["count"] == len(build_dataset("emoji", "val", 16))
    assert not list((work / "shards").glob(".*"))  # no temporary files left


def test_shards_hold_the_tokenizers_ids(work: Path) -> None:
    """Each stored view is exactly what the tokenizer gives for that view of the image."""
    tok = tv.Tokenizer.from_pretrained(work / "tok")
    dataset = build_dataset("emoji", "train", 16)
    samples = list(TokenShards(work / "shards", "train"))  # one ordered pass
    assert len(samples) == 3 * TRAIN_IMAGES
    ids, length, label = samples[0]
    assert ids.shape == (8, 1) and ids.dtype == torch.int64 and length == 8
    import webdataset as wds

    keys = [s["__key__"] for s in wds.DataPipeline(
        wds.SimpleShardList(sorted(map(str, (work / "shards").glob("train-*.tar")))),
        wds.tarfile_to_samples(),
    )]  # fmt: skip
    assert keys[:3] == [keys[0][:9] + v for v in ("orig", "flip", "crop0")]
    index = int(keys[0][:8])
    image, true_label = dataset[index]
    assert label == true_label
    assert torch.equal(samples[0][0], tok.encode(image[None]).ids[0])
    assert torch.equal(samples[1][0], tok.encode(image[None].flip(-1)).ids[0])
    all_ids = torch.stack([s[0] for s in samples])
    sequences = torch.unique(all_ids.flatten(1), dim=0)
    assert len(sequences) > 100, len(sequences)  # the tokens vary: the GPT has something to learn


def test_datamodule_batches_and_info(work: Path) -> None:
    dm = TokenDataModule(str(work / "shards"), batch_size=16, shuffle_buffer=50)
    assert dm.info["vocab_sizes"] == [125] and dm.info["num_classes"] == 9
    ids, lengths, labels = next(iter(dm.train_dataloader()))
    assert ids.shape == (16, 8, 1) and lengths.tolist() == [8] * 16 and labels.shape == (16,)
    assert len(dm.train_dataloader()) == 3 * TRAIN_IMAGES // 16
    loader = dm.train_dataloader()
    first, second = (torch.cat([b[0] for b in loader]) for _ in range(2))
    assert first.shape == second.shape and not torch.equal(first, second)  # reshuffled per pass
    val = sum(b[0].shape[0] for b in dm.val_dataloader())
    assert val == len(build_dataset("emoji", "val", 16))  # all of it: 240 < --num-images


def test_fit_loss_falls(run: Path) -> None:
    rows = metrics(run)
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == STEPS
    assert losses[0] == pytest.approx(np.log(125), rel=1e-3)  # zero-initialised outputs
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.85 * first, (first, last)
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    bits = [float(r["val/bits_per_image"]) for r in rows if r.get("val/bits_per_image")]
    assert len(val) == 2 and val[1] < val[0]
    assert bits[-1] == pytest.approx(val[-1] * 8 / np.log(2), rel=1e-3)  # 8 tokens x 1 codebook


def test_export_and_sample(run: Path, work: Path) -> None:
    ckpt = run / "checkpoints" / "last.ckpt"
    assert gpt_cli.main(["export", str(ckpt), str(work / "gpt")]) == 0
    gpt = GPT.from_pretrained(work / "gpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    ema = {k.removeprefix("gpt."): v for k, v in state["state_dict"].items()}
    assert all(torch.equal(v, ema[k]) for k, v in gpt.state_dict().items())
    config = json.loads((work / "gpt" / "config.json").read_text())
    assert config["extra"]["tokenizer"] == str(work / "tok") and config["extra"]["weights"] == "ema"
    assert gpt.class_names[1] == "people" and gpt.max_tokens == 8

    out = work / "samples"
    args = ["--gpt", str(work / "gpt"), "--class", "smileys", "--class", "7", "--n", "3"]
    args += ["--num-tokens", "4", "--cfg", "2", "--batch-size", "4", "-o", str(out), "--quiet"]
    assert sample.main(args) == 0  # the tokenizer comes from the GPT's config
    npz = np.load(out / "samples.npz")
    assert npz["samples"].shape == (6, 16, 16, 3) and npz["samples"].dtype == np.uint8
    assert npz["labels"].tolist() == [0, 0, 0, 7, 7, 7] and npz["ids"].shape == (6, 4, 1)
    assert len(list((out / "images").glob("*.png"))) == 6
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (8 * 18 + 2, 2 * 18 + 2)  # 2 classes x 8 columns of 16 px tiles
    meta = json.loads((out / "samples.json").read_text())
    assert meta["class_names"] == ["smileys"] * 3 + ["symbols"] * 3 and meta["num_tokens"] == 4
    first = npz["samples"].copy()
    assert sample.main([*args, "--overwrite"]) == 0  # same seed and batch size: same images
    assert np.array_equal(np.load(out / "samples.npz")["samples"], first)


def test_user_errors_exit_2(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shards = str(work / "shards")
    cases = [
        (pretokenize.main, ["--model", str(work / "tok"), "--data", "emoji", "-o", shards],
         "already holds"),
        (pretokenize.main, ["--model", str(work / "nowhere"), "--data", "emoji", "-o", shards],
         "--model"),
        (pretokenize.main, ["--model", str(work / "tok"), "--data", "nope", "-o", shards],
         "unknown dataset"),
        (sample.main, ["--gpt", str(work / "tok"), "-o", str(work / "s")], "not a gpt directory"),
        (gpt_cli.main, ["export", str(work / "tok" / "config.json"), str(work / "x")],
         "not a readable"),
        (gpt_cli.main, ["fit", "--config", str(REPO / "configs/gpt/tiny.yaml"),
                        "--data.root", str(work / "nowhere")], "run `vistok pretokenize` first"),
        # through the `vistok` dispatcher and the package's entry point
        (vistok, ["sample", "--gpt", str(work / "nowhere"), "-o", str(work / "s")], "--gpt"),
    ]  # fmt: skip
    for main, argv, message in cases:
        with mock.patch.object(sys, "argv", ["vistok"]):
            assert main(argv) == 2, argv
        # One line, besides the start-up note of the training CLI ("[vistok] trainer.precision").
        err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("[vistok]")]
        assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
