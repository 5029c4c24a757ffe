"""`vistok bench --sections reference`: the converted-TiTok-vs-reference section says clearly
why it did not run when no reference checkout is given or the one given does not import (the
measurement itself needs the reference's code and the titok family, and runs by hand)."""

from __future__ import annotations

import json
import sys

import torch

from tokenizers_vis.benchmark.common import Context
from tokenizers_vis.benchmark.reference import ENV, paired, run_reference, speedup
from tokenizers_vis.cli import bench
from tokenizers_vis.precision import resolve_precision

CTX = Context(torch.device("cpu"), resolve_precision("fp32", "cpu"), 0, 1, {})


def test_skipped_without_a_checkout(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    section = run_reference(CTX, None, 1)
    assert section["records"] == []
    assert "--reference-titok DIR" in section["skipped"] and ENV in section["skipped"]


def test_skipped_when_not_a_checkout_or_not_importable(monkeypatch, tmp_path):
    section = run_reference(CTX, str(tmp_path), 1)
    assert section["skipped"] == f"{tmp_path} is not a 1d-tokenizer checkout (no modeling/titok.py)"
    (tmp_path / "modeling").mkdir()
    (tmp_path / "modeling" / "__init__.py").write_text("")
    (tmp_path / "modeling" / "titok.py").write_text("import a_requirement_not_installed\n")
    monkeypatch.setenv(ENV, str(tmp_path))  # the environment names the checkout
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = list(sys.path)
    section = run_reference(CTX, None, 1)
    assert section["records"] == [] and sys.path == before
    assert section["skipped"] == (
        f"the reference at {tmp_path} does not import here (ModuleNotFoundError: No module named "
        "'a_requirement_not_installed'); run from an environment with its requirements.txt"
    )
    for name in [m for m in sys.modules if m == "modeling" or m.startswith("modeling.")]:
        monkeypatch.delitem(sys.modules, name)


def test_cli_reports_the_skipped_section(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(ENV, raising=False)
    args = ["--quick", "--sections", "reference", "--device", "cpu", "--out", str(tmp_path)]
    assert bench.main(args) == 0
    (report,) = tmp_path.glob("bench-*-quick.json")
    sections = json.loads(report.read_text())["sections"]
    assert (
        list(sections) == ["reference"] and "--reference-titok" in sections["reference"]["skipped"]
    )
    md = report.with_suffix(".md").read_text()
    assert "## Converted TiTok vs the reference implementation" in md and "Skipped: no ref" in md
    assert bench.main(["--sections", "referenc"]) == 2  # an unknown section: a usage error


def test_paired_alternates_and_keeps_every_repeat():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("reference", "vistok")}
    times = paired(calls, torch.device("cpu"), warmup=1, repeats=4)
    assert order == ["reference", "vistok"] + ["reference", "vistok", "vistok", "reference"] * 2
    assert {name: len(t) for name, t in times.items()} == {"reference": 4, "vistok": 4}


def test_speedup_is_the_median_of_back_to_back_ratios():
    # Load doubles both calls of repeats 2 and 4 alike: it cancels in each pair's ratio
    # (1.1 ... 1.5) but not in the ratio of the median times.
    vistok = [1.0, 2.0, 1.0, 2.0, 1.0]
    reference = [r * t for r, t in zip([1.1, 1.2, 1.3, 1.4, 1.5], vistok, strict=True)]
    result = speedup({"reference": reference, "vistok": vistok}, "vistok")
    assert abs(result["median"] - 1.3) < 1e-12
    assert abs(result["low_quartile"] - 1.2) < 1e-12 and abs(result["high_quartile"] - 1.4) < 1e-12
    assert abs(result["of_medians"] - 1.5) < 1e-12  # median 1.5 s over median 1.0 s
