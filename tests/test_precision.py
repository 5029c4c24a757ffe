"""Precision fits the machine: bf16 only where the hardware runs it natively, fp32 elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenizers_vis import precision
from tokenizers_vis.cli import train


@pytest.fixture
def native(monkeypatch):
    """Pretend the CPU has native bf16 (True) or not (False)."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_bf16_native", lambda: value)

    return set_native


def test_auto_follows_the_cpu_capability(native):
    native(True)
    choice = precision.resolve_precision("auto", "cpu")
    assert choice.dtype == torch.bfloat16 and "native bf16" in choice.reason
    assert precision.lightning_precision("auto", "cpu")[0] == "bf16-mixed"
    native(False)
    choice = precision.resolve_precision("auto", "cpu")
    assert choice.dtype == torch.float32 and "emulated" in choice.reason
    assert precision.lightning_precision("auto", "cpu")[0] == "32-true"
    assert precision.autocast_dtype("cpu") is None


def test_explicit_choice_wins_both_ways(native):
    native(False)
    assert precision.resolve_precision("bf16", "cpu").dtype == torch.bfloat16
    native(True)
    assert precision.resolve_precision("fp32", "cpu").dtype == torch.float32
    with pytest.raises(ValueError, match="auto, bf16, fp32"):
        precision.resolve_precision("fp16", "cpu")


def test_capability_probe_reads_torch_then_cpuinfo(monkeypatch):
    precision.cpu_bf16_native.cache_clear()
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "amx_bf16": True})
    assert precision.cpu_bf16_native() is True
    precision.cpu_bf16_native.cache_clear()
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True})
    assert precision.cpu_bf16_native() is False
    precision.cpu_bf16_native.cache_clear()
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert precision.cpu_bf16_native() is True
    precision.cpu_bf16_native.cache_clear()


def test_autocast_is_a_no_op_in_fp32_and_bf16_where_native(native):
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    native(False)
    with precision.autocast("cpu") as choice:
        assert (a @ b).dtype == torch.float32 and choice.name == "fp32"
    native(True)
    with precision.autocast("cpu") as choice:
        assert (a @ b).dtype == torch.bfloat16 and choice.name == "bf16"


@pytest.mark.parametrize(("is_native", "extra", "expected"), [
    (False, [], "32-true"),
    (True, [], "bf16-mixed"),
    (True, ["--precision", "fp32"], "32-true"),
    (False, ["--trainer.precision", "bf16-mixed"], "bf16-mixed"),
])  # fmt: skip
def test_training_cli_resolves_and_says_why(
    is_native, extra, expected, native, tmp_path: Path, monkeypatch, capsys, one_thread
):
    """`vistok train` with configs/trainer/cpu.yaml: picks precision at start-up and says so."""
    native(is_native)
    seen = {}

    def spy(self):
        seen["precision"] = self.config["validate"]["trainer"]["precision"]
        raise train.SetupError("stop after resolving")  # no need to run anything

    monkeypatch.setattr(train.VistokCLI, "instantiate_classes", spy)
    args = ["validate", "--config", "configs/tokenizer/tiny_cpu_fsq.yaml"]
    args += ["--config", "configs/data/emoji16.yaml", "--config", "configs/trainer/cpu.yaml"]
    args += [f"--trainer.default_root_dir={tmp_path}", *extra]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert seen["precision"] == expected
    assert f"[vistok] trainer.precision {expected}" in err
