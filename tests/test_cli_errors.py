"""One contract for user errors across every `vistok` command (built-in and plug-in): a mistake is
one line on stderr and exit status 2, never a traceback; a bug is never turned into one."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

# Imported here, not first inside a test: Lightning's logging handler keeps the stderr it sees
# at import, which would be a test's capture, closed after that test.
from tokenizers_vis.cli import train  # noqa: F401
from tokenizers_vis.cli.common import run
from tokenizers_vis.cli.main import commands
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.errors import UsageError, VistokError

REPO = Path(__file__).resolve().parents[1]
MISSING = "/no/such/model"
TRAIN_CONFIGS = ("tokenizer/tiny_cpu_fsq.yaml", "data/emoji16.yaml", "trainer/test.yaml")

# A representative user mistake per command: a model, data set, file or option that is wrong.
# `{tmp}` is the test's folder. A new command needs an entry here (the test says so).
MISTAKES: dict[str, list[str]] = {
    "encode": ["{tmp}/a.png", "--model", MISSING, "-q"],
    "decode": ["{tmp}/a.vtok", "--model", MISSING, "-q"],
    "info": ["--bogus", "{tmp}/a.vtok"],
    "entropy": ["fit", "--model", MISSING, "--data", "emoji", "-q"],
    "data": ["summary", "imagenet"],
    "train": [
        "fit",
        *[a for c in TRAIN_CONFIGS for a in ("--config", str(REPO / "configs" / c))],
        "--trainer.default_root_dir",
        "{tmp}",
        "--model.init_from",
        "{tmp}/missing",
    ],
    "export": ["{tmp}/missing.ckpt", "{tmp}/out"],
    "eval": ["tokenizer", "--model", MISSING, "--data", "emoji", "--no-fid", "--out", "{tmp}/o"],
    "demo": ["--model", MISSING, "--out", "{tmp}/demo"],
    "serve": ["--port", "not-a-port"],
    "convert": ["no_such_family", "{tmp}/model.safetensors", "{tmp}/out"],
    "bench": ["--quick", "--sections", "peak", "--device", "tpu9", "--out", "{tmp}"],
    "sample": ["--gpt", MISSING, "-o", "{tmp}/samples"],
    "pretokenize": ["--model", MISSING, "--data", "emoji", "-o", "{tmp}/tokens"],
    "gpt": ["export", "{tmp}/missing.ckpt", "{tmp}/out"],
}


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_turns_a_user_mistake_into_one_line_and_exit_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    assert name in MISTAKES, f"add a representative user mistake of `vistok {name}` to MISTAKES"
    monkeypatch.setattr("sys.argv", ["vistok"])  # LightningCLI compares its args with sys.argv
    argv = [a.format(tmp=tmp_path) for a in MISTAKES[name]]
    assert vistok([name, *argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"vistok {name}"), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "checkpoints").exists()


def test_an_unknown_command_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert vistok(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vistok: error: unknown command"), err


def test_run_maps_user_errors_and_their_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    class Refused(VistokError):
        exit_code = 1

    def fail(error: Exception):
        def body():
            raise error

        return body

    assert run(fail(UsageError("--x: bad\n  value")), "prog") == 2
    assert capsys.readouterr().err == "prog: error: --x: bad value\n"  # always one line
    assert run(fail(Refused("no")), "prog") == 1
    assert run(lambda: 3, "prog") == 3 and run(lambda: None, "prog") == 0


@pytest.mark.parametrize(
    "bug", [ValueError("a bug"), KeyError("a bug"), RuntimeError("a bug"), OSError("a bug")]
)
def test_run_does_not_swallow_a_bug(bug: Exception) -> None:
    def body():
        raise bug

    with pytest.raises(type(bug), match="a bug"):
        run(body, "prog")


def test_a_bug_inside_a_command_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenizers_vis.cli import info

    def broken(data: bytes):
        raise ValueError("a bug in the header reader")

    (tmp_path / "a.vtok").write_bytes(b"VTOK")
    monkeypatch.setattr(info, "read_header", broken)
    with pytest.raises(ValueError, match="a bug in the header reader"):
        vistok(["info", str(tmp_path / "a.vtok")])


def _error_classes() -> list[tuple[str, str]]:
    """(module, class) of every exception class defined in the two packages."""
    found = []
    for package in ("tokenizers_vis", "generation"):
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    found.append((module.removesuffix(".__init__"), node.name))
    return found


@pytest.mark.parametrize(("module", "name"), _error_classes())
def test_every_error_class_is_a_user_error(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, VistokError), f"{module}.{name} must subclass VistokError"
