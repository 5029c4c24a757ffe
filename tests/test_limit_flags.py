"""Every command that loads a model or a user JSON / weights file takes the limit flags of
`cli.common.add_limit_flags`, and hands them to its loaders: a limit lowered by a flag refuses
an input the default accepts, in one line naming the flag, and raising it lifts the refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

# Imported here, not first inside a test: Lightning's logging handler keeps the stderr it sees
# at import, which would be a test's capture, closed after that test.
from tokenizers_vis.cli import train  # noqa: F401
from tokenizers_vis.cli.main import commands
from tokenizers_vis.cli.main import main as vistok

FLAG = "--max-config-bytes"

# The arguments before `--help` whose help lists the limit flags (a subcommand where the
# command has subcommands).
WITH_FLAGS: dict[str, list[str]] = {
    "encode": [],
    "decode": [],
    "entropy": ["fit"],
    "eval": ["tokenizer"],
    "export": [],
    "convert": [],
    "serve": [],
    "bench": [],
    "demo": [],
    "sample": [],
    "pretokenize": [],
}
# Commands without them, and why. A new command belongs in one of the two tables.
WITHOUT_FLAGS = {
    "info": "reads .vtok headers only and decodes nothing: it describes a file of any size",
    "data": "loads no model",
    "train": "LightningCLI: the model comes from the user's own config",
    "gpt": "LightningCLI; `gpt export` reads the user's own training checkpoint",
}


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_that_loads_a_model_lists_the_limit_flags(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert name in WITH_FLAGS or name in WITHOUT_FLAGS, f"add `vistok {name}` to a table"
    if name in WITHOUT_FLAGS:
        return
    monkeypatch.setattr("sys.argv", ["vistok"])
    assert vistok([name, *WITH_FLAGS[name], "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--max-pixels", FLAG, "--max-parameters", "--max-memory"):
        assert flag in out, f"`vistok {name}` --help lacks {flag}"


def _pretrained_dir(tmp_path: Path) -> Path:
    """A directory whose config.json is well-formed JSON of a few hundred bytes but no model
    (a run that gets past the size check fails later, for that), beside a tiny weights file."""
    folder = tmp_path / "model"
    folder.mkdir()
    config = {"format_version": 1, "kind": "tokenizer", "padding": "x" * 300}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"w": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    return folder


# Representative commands and their arguments; `{model}` is the directory, `{tmp}` the folder.
LOADING = {
    "entropy": ["fit", "--model", "{model}", "--data", "emoji", "-o", "{tmp}/table", "-q"],
    "eval": ["tokenizer", "--model", "{model}", "--data", "emoji", "--no-fid", "--out", "{tmp}/o"],
    "pretokenize": ["--model", "{model}", "--data", "emoji", "-o", "{tmp}/tokens", "--quiet"],
    "sample": ["--gpt", "{model}", "-o", "{tmp}/samples", "--quiet"],
    "export": ["--onnx", "{tmp}/onnx", "--model", "{model}"],
    "convert": ["titok", "{model}/model.safetensors", "{tmp}/converted"],
}


@pytest.mark.parametrize("name", sorted(LOADING))
def test_a_lowered_limit_refuses_naming_its_flag_and_raising_it_lifts_the_refusal(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _pretrained_dir(tmp_path)
    argv = [name, *(a.format(model=model, tmp=tmp_path) for a in LOADING[name])]
    assert vistok([*argv, FLAG, "64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and FLAG in err and "config.json" in err, err
    assert "Traceback" not in err
    assert vistok([*argv, FLAG, "100000"]) != 0  # no model in the config: refused for that
    err = capsys.readouterr().err
    assert FLAG not in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "flags",
    [[], [FLAG, "20000000", "--max-parameters", "9000000000", "--max-memory", "100"], [FLAG, "99"]],
)
def test_serve_hands_its_model_limits_to_each_sample_run(flags: list[str]) -> None:
    from generation.cli.sample import build_parser as sample_parser
    from tokenizers_vis.cli.common import limits_from_args
    from tokenizers_vis.cli.serve import build_parser as serve_parser
    from tokenizers_vis.serve.generate import _limit_argv

    served = limits_from_args(serve_parser().parse_args(flags))
    argv = ["--gpt", "g", "-o", "out", *_limit_argv(served)]
    sampled = limits_from_args(sample_parser().parse_args(argv))
    for field in ("max_json_bytes", "max_json_depth", "max_parameters", "max_tensors"):
        assert getattr(sampled, field) == getattr(served, field), field
    assert sampled.max_work_bytes == served.max_work_bytes


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_convert_counts_a_checkpoints_parameters_against_max_parameters(
    suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / f"w{suffix}"
    tensors = {"a": torch.zeros(10, 10), "b": torch.zeros(5)}  # 105 parameters
    if suffix == ".safetensors":
        save_file(tensors, str(src))
    else:
        torch.save(tensors, src)
    argv = ["convert", "titok", str(src), str(tmp_path / "out"), "--max-parameters"]
    assert vistok([*argv, "104"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "parameters 105" in err and "--max-parameters" in err, err
    assert vistok([*argv, "105"]) == 1  # within the limit: read, then not a TiTok checkpoint
    err = capsys.readouterr().err
    assert "--max-parameters" not in err and "not a titok checkpoint" in err, err
    assert not (tmp_path / "out").exists()
