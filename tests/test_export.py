"""`vistok export CKPT OUT_DIR`: a training checkpoint -> a pretrained directory, in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file

from tokenizers_vis.cli import main as cli
from tokenizers_vis.cli import train
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("tokenizer/tiny_cpu_fsq.yaml", "data/emoji16.yaml", "trainer/test.yaml")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-step run with EMA (decay 0.9, from configs/trainer/test.yaml)."""
    root = tmp_path_factory.mktemp("run")
    args = ["fit"]
    for config in CONFIGS:
        args += ["--config", str(REPO / "configs" / config)]
    args += ["--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir"]
    args += [str(root), "--trainer.max_steps", "10", "--data.batch_size", "8"]
    with mock.patch.object(sys, "argv", ["vistok"]):
        assert train.main(args) == 0
    (path,) = root.glob("checkpoints/last.ckpt")
    return path


def reference(state_dict: dict[str, torch.Tensor]) -> Tokenizer:
    """The tokenizer inside a system state dict, loaded by hand (not through training.export)."""
    model = Tokenizer(**preset_spec("tiny_cpu_fsq"))
    state = {k[10:]: v for k, v in state_dict.items() if k.startswith("tokenizer.")}
    model.load_state_dict(state, strict=True)
    return model.eval()


def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 16, 16, generator=g) * 2 - 1  # (6 3 16 16)


def assert_same_model(a: Tokenizer, b: Tokenizer) -> None:
    x = images()
    for k in (1, 3, 8):
        ta, tb = a.encode(x, num_tokens=k), b.encode(x, num_tokens=k)
        assert torch.equal(ta.ids, tb.ids)
        assert torch.equal(a.decode(ta), b.decode(tb))


def export(*args: object) -> int:
    return cli.main(["export", *map(str, args)])


def test_export_writes_ema_weights(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "pretrained"
    assert export(ckpt, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer"] == preset_spec("tiny_cpu_fsq")
    assert config["extra"]["weights"] == "ema" and config["extra"]["global_step"] == 10
    loaded = Tokenizer.from_pretrained(out)
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert_same_model(loaded, reference(checkpoint["state_dict"]))  # EMAWeightAveraging's weights


def test_export_raw_weights(ckpt: Path, tmp_path: Path) -> None:
    assert export(ckpt, tmp_path / "ema") == 0
    assert export(ckpt, tmp_path / "raw", "--weights", "raw") == 0
    raw = Tokenizer.from_pretrained(tmp_path / "raw")
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert_same_model(raw, reference(checkpoint["current_model_state"]))
    assert json.loads((tmp_path / "raw" / "config.json").read_text())["extra"]["weights"] == "raw"
    # EMA decay 0.9 over 10 steps: the averaged weights are not the optimizer's.
    ema = load_file(tmp_path / "ema" / "model.safetensors")
    raw_state = load_file(tmp_path / "raw" / "model.safetensors")
    assert ema.keys() == raw_state.keys()
    assert max((ema[k] - raw_state[k]).abs().max().item() for k in ema) > 1e-4


def test_export_unwraps_ddp_and_compile_prefixes(ckpt: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {
        "module." + k.replace("tokenizer.", "tokenizer._orig_mod.", 1): v
        for k, v in checkpoint["state_dict"].items()
    }
    wrapped = tmp_path / "wrapped.ckpt"
    torch.save(checkpoint, wrapped)
    assert export(wrapped, tmp_path / "a") == 0
    assert export(ckpt, tmp_path / "b") == 0
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_replaces_existing_directory_atomically(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "pretrained"
    assert export(ckpt, out, "--weights", "raw") == 0
    assert export(ckpt, out) == 0  # overwrite: raw -> ema
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["extra"]["weights"] == "ema"


def test_failed_write_leaves_no_partial_file(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tokenizers_vis.hub as hub

    def broken_save(model: object, path: str, metadata: object = None) -> None:
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(hub, "save_model", broken_save)
    out = tmp_path / "pretrained"
    with pytest.raises(OSError, match="disk full"):
        hub.save_pretrained(Tokenizer(**preset_spec("tiny_cpu_fsq")), out)
    assert list(out.iterdir()) == []  # neither the target nor its temporary file


class NotAModel:
    """Pickled into a file that is not a checkpoint: weights-only loading must refuse it."""


BAD_CHECKPOINTS = {
    # another LightningModule's checkpoint: no tokenizer spec
    "other": {"state_dict": {"layer.weight": torch.zeros(2)}, "hyper_parameters": {"lr": 1.0}},
    # an arbitrary pickle
    "pickle": {"hyper_parameters": {"tokenizer": "tiny_cpu_fsq"}, "x": NotAModel()},
    # weights that do not fit the spec
    "spec": {
        "hyper_parameters": {"tokenizer": "tiny_cpu_vq"},
        "state_dict": {"tokenizer.encoder.patch_positions": torch.zeros(1)},
    },
}


def bad_input(case: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{case}.ckpt"
    if case == "directory":
        return tmp_path
    if case == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 10)
    elif case in BAD_CHECKPOINTS:
        torch.save(BAD_CHECKPOINTS[case], path)
    return path


@pytest.mark.parametrize("case", ["missing", "directory", "garbage", *BAD_CHECKPOINTS])
def test_bad_input_exits_2_with_message(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bad_input(case, tmp_path)
    out = tmp_path / "out"
    assert export(path, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("vistok export: error:") and "Traceback" not in err, err
    if case != "spec":  # a file that is not a usable checkpoint: say which one
        assert str(path) in err, err
    assert not out.exists()


def test_export_over_the_run_it_started_from_counts_all_steps(ckpt: Path, tmp_path: Path) -> None:
    """The shipped model carried on across sessions: a run warm-started from `out` (10 steps
    behind it) is exported over `out` itself; the steps behind the new weights add up."""
    out = tmp_path / "tok"
    assert export(ckpt, out) == 0  # 10 steps
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["init_from"] = str(out)
    continued = tmp_path / "continued.ckpt"
    torch.save(checkpoint, continued)
    for expected in (20, 30):  # and once more: total_steps, not global_step, is carried on
        assert export(continued, out) == 0
        extra = json.loads((out / "config.json").read_text())["extra"]
        assert extra["init_from"] == str(out) and extra["total_steps"] == expected


def test_lineage_of_a_vanished_init_from_keeps_the_name(tmp_path: Path) -> None:
    from tokenizers_vis.training.export import lineage

    assert lineage(None, 5) == {}
    assert lineage(str(tmp_path / "gone"), 5) == {"init_from": str(tmp_path / "gone")}


def test_frozen_parts_export_their_live_weights_not_the_drifted_average(
    ckpt: Path, tmp_path: Path
) -> None:
    """EMA rounding moves a frozen weight's average off the weight; export must not ship that."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw = checkpoint["current_model_state"]
    checkpoint["state_dict"] = {
        k: v + 1e-3 if k.startswith("tokenizer.encoder.") else v.clone() for k, v in raw.items()
    }
    checkpoint["hyper_parameters"]["freeze"] = ["encoder"]
    frozen = tmp_path / "frozen.ckpt"
    torch.save(checkpoint, frozen)
    assert export(frozen, tmp_path / "out") == 0
    out = load_file(tmp_path / "out" / "model.safetensors")
    for key, value in out.items():
        expected = raw["tokenizer." + key]
        if key.startswith("encoder."):  # frozen: the live weights, exactly
            assert torch.equal(value, expected), key
        elif value.is_floating_point():  # the rest: the average (here = live, unshifted)
            assert torch.equal(value, expected), key
    del checkpoint["hyper_parameters"]["freeze"]  # not frozen: the (shifted) average ships
    torch.save(checkpoint, frozen)
    assert export(frozen, tmp_path / "plain") == 0
    plain = load_file(tmp_path / "plain" / "model.safetensors")
    shifted = [k for k in plain if k.startswith("encoder.") and plain[k].is_floating_point()]
    assert shifted and all(not torch.equal(plain[k], raw["tokenizer." + k]) for k in shifted)
