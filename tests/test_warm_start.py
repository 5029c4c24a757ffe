"""`TokenizerSystem(init_from=...)`: a run starts from a pretrained directory's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer
from tokenizers_vis.training.system import TokenizerSystem
from tokenizers_vis.training.warm_start import architecture

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def pretrained(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    return Tokenizer(**preset_spec("tiny_cpu_fsq")).save_pretrained(tmp_path / "tok")


def test_init_from_copies_every_weight(pretrained: Path) -> None:
    torch.manual_seed(2)  # a fresh init differs from the saved one
    fresh = TokenizerSystem("tiny_cpu_fsq").tokenizer.state_dict()
    system = TokenizerSystem("tiny_cpu_fsq", init_from=str(pretrained))
    saved = Tokenizer.from_pretrained(pretrained).state_dict()
    ours = system.tokenizer.state_dict()
    assert ours.keys() == saved.keys()
    assert all(torch.equal(ours[k], saved[k]) for k in saved)
    assert not all(torch.equal(fresh[k], saved[k]) for k in saved)
    assert system.tokenizer.training  # loading for training must not leave eval mode on


def test_init_from_allows_other_training_settings(pretrained: Path) -> None:
    spec = preset_spec("tiny_cpu_fsq", token_drop={"sampling": "pow2", "drop_prob": 0.5})
    system = TokenizerSystem(spec, init_from=str(pretrained))
    assert system.tokenizer.token_drop.sampling == "pow2"
    assert architecture(spec) == architecture(preset_spec("tiny_cpu_fsq"))


def test_init_from_rejects_another_architecture(pretrained: Path) -> None:
    spec = preset_spec("tiny_cpu_fsq", decoder={"depth": 2})
    with pytest.raises(ValueError, match="different architecture"):
        TokenizerSystem(spec, init_from=str(pretrained))


def test_init_from_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a directory nor a shipped model"):
        TokenizerSystem("tiny_cpu_fsq", init_from=str(tmp_path / "nope"))


@pytest.mark.usefixtures("one_thread")
def test_train_cli_reports_a_bad_init_from_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tokenizers_vis.cli import train

    configs = ("tokenizer/tiny_cpu_fsq.yaml", "data/emoji16.yaml", "trainer/test.yaml")
    args = ["fit", *[a for c in configs for a in ("--config", str(REPO / "configs" / c))]]
    args += ["--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "1"]
    assert train.main([*args, "--model.init_from", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "vistok train: error:" in err and "missing" in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists()
