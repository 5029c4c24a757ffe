"""`vistok bench`: the quick run writes every section, built in and installed through entry
points, and the FLOP counter counts right.

The quick run is a smoke test of the machinery (timings of test-sized models, one repeat): no
speed is asserted (it depends on the machine's load), but every number must be what its
definition says given the others (rates are counts over the measured seconds, fractions are
over the measured peak, speed-ups are ratios of the rates) and counted FLOPs, which do not
depend on the load, must grow where the work grows.
"""

from __future__ import annotations

import json
import math
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_vis.benchmark import SECTIONS, count_flops, sections
from tokenizers_vis.benchmark.peak import flop_check
from tokenizers_vis.cli import bench

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("gpt",)  # sections generation adds through `vistok.bench_sections`
STAMP = {"device", "cpu", "precision", "torch", "threads"}
KEYS = {  # section -> keys every record has
    "peak": {"dtype", "n", "flops_per_s"},
    "tokenizers": {"model", "op", "batch", "images_per_s", "gflop_per_image",
                   "achieved_gflop_per_s", "fraction_of_peak", "memory_peak_mib",
                   "memory_extra_mib", "memory_method"},
    "rf": {"model", "num_steps", "batch", "seconds_per_image", "gflop_per_image"},
    "codec": {"model", "op", "files", "files_per_s"},
    "training": {"model", "batch", "lightning_images_per_s", "bare_images_per_s", "ratio",
                 "lightning_precision"},
    "gpt": {"preset", "K", "kv_cache", "tokens_per_s"},
    "inception": {"path", "layout", "grad_mode", "batch", "images_per_s", "fraction_of_peak",
                  "max_abs_diff", "relative_diff", "within_tolerance"},
}  # fmt: skip


def test_flops_of_known_layers_are_analytic():
    x = torch.randn(3, 5)
    assert count_flops(lambda: nn.Linear(5, 7)(x)) == 2 * 3 * 5 * 7
    image = torch.randn(2, 3, 10, 12)
    conv = nn.Conv2d(3, 4, kernel_size=3)  # output (2 4 8 10)
    assert count_flops(lambda: conv(image)) == 2 * (2 * 4 * 8 * 10) * (3 * 3 * 3)
    b, h, n, d = 2, 3, 10, 8
    q = torch.randn(b, h, n, d, requires_grad=True)
    # CPU SDPA dispatches to a kernel PyTorch's table lacks; QK^T and PV: 2 * 2 b h n^2 d.
    assert count_flops(lambda: F.scaled_dot_product_attention(q, q, q)) == 4 * b * h * n * n * d
    both = count_flops(lambda: F.scaled_dot_product_attention(q, q, q).sum().backward())
    assert both == 4 * b * h * n * n * d * (1 + 2.5)  # backward: 5 matmuls (scores recomputed)


def test_titok_encoder_counts_about_55_gflop():
    check = flop_check()  # 58.4 with a full last block; 55.2 computing only the rows read
    assert abs(check["counted_gflop"] - 55.2) < 0.3, check
    assert abs(check["relative_difference"]) < 0.01


def test_model_list_and_bad_sections():
    assert bench.model_list("emoji32, vit_b16_k64_vq@1+4") == [
        ("emoji32", None),
        ("vit_b16_k64_vq", (1, 4)),
    ]
    assert bench.main(["--sections", "peak,nope"]) == 2  # argparse's one line, through `run`


def pyproject_entry_points(group: str) -> list[EntryPoint]:
    """The entry points pyproject.toml declares for `group`: what an install of this checkout
    registers (the shared environment may hold an older install)."""
    text = (ROOT / "pyproject.toml").read_text()  # (tomllib needs Python 3.11)
    header = f'[project.entry-points."{group}"]'
    body = text.partition(header)[2].split("\n[", 1)[0]
    pairs = re.findall(r'^(\w+) = "([^"]+)"$', body, flags=re.MULTILINE)
    return [EntryPoint(name, value, group) for name, value in pairs]


@pytest.fixture(scope="module")
def installed_sections():
    """`vistok bench` sees the sections this checkout's pyproject.toml registers."""
    declared = pyproject_entry_points(sections.ENTRY_POINT_GROUP)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sections, "entry_points", lambda group: declared)
        yield declared


def test_pyproject_registers_the_gpt_section(installed_sections):
    from generation.bench import SECTION

    assert [ep.name for ep in installed_sections] == list(PLUGINS)
    assert sections.load_section("gpt") is SECTION
    args = bench.parser().parse_args(["--sections", "gpt", "--gpt-ks", "8,16", "--gpt-cfg", "0"])
    assert args.sections == ("gpt",)
    assert bench._section_options(args) == {"gpt": {"ks": (8, 16), "cfg": 0.0}}
    with pytest.raises(SystemExit) as exc:  # its flags check their values
        bench.parser().parse_args(["--gpt-ks", "0"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="unknown options"):
        SECTION.resolved_options(quick=True, overrides={"nope": 1})


def test_entry_points_add_sections_and_never_replace_builtin_ones(monkeypatch):
    def fake(group):
        return [EntryPoint("peak", "x:Y", group), EntryPoint("extra", "x:Y", group)]

    monkeypatch.setattr(sections, "entry_points", fake)
    from tokenizers_vis.benchmark import section_names

    assert section_names() == (*SECTIONS, "extra")


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, one_thread, installed_sections):
    out = tmp_path_factory.mktemp("bench")
    assert bench.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    (json_path,) = out.glob("bench-*-quick.json")
    return json.loads(json_path.read_text()), json_path.with_suffix(".md").read_text()


def test_quick_run_writes_every_section(quick_report):
    report, md = quick_report
    meta = report["meta"]
    assert meta["quick"] and meta["device"] == "cpu" and meta["cpu"]
    assert list(report["sections"]) == [*SECTIONS, *PLUGINS]
    seconds = [s["seconds"] for s in report["sections"].values()]
    assert all(t > 0 for t in seconds) and sum(seconds) <= meta["wall_s"]  # run one after another
    for name, section in report["sections"].items():
        assert "error" not in section, (name, section.get("traceback"))
        assert section["records"], name
        for record in section["records"]:
            assert STAMP | KEYS[name] <= set(record), (name, sorted(record))
            assert record["device"] == "cpu" and record["threads"] == 1, record
            assert record["precision"] in ("fp32", "bf16"), record
    assert f"# vistok benchmark: {meta['device_name']}" in md
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert len(headings) == len(SECTIONS) + len(PLUGINS)
    for title in ("Matmul peak", "Tokenizers", "Rectified-flow", "Codec", "Lightning", "GPT",
                  "TF-Inception"):  # fmt: skip
        assert any(title in h for h in headings), (title, headings)
    assert "| preset | K | KV cache | batch | tokens/s |" in md  # a plug-in's own columns
    assert "KV cache speed-up:" in md  # and notes


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def test_quick_run_measures_what_it_says(quick_report):
    sections_ = quick_report[0]["sections"]
    peak = sections_["peak"]["peak_flops_per_s"]
    assert sections_["peak"]["records"][0]["flops_per_s"] > 0
    assert peak["fp32"] == max(r["flops_per_s"] for r in sections_["peak"]["records"]
                               if r["dtype"] == "fp32")  # fmt: skip
    assert abs(sections_["peak"]["flop_check"]["relative_difference"]) < 0.01

    tok = sections_["tokenizers"]["records"]
    assert {(r["op"], r["batch"]) for r in tok} == {(o, b) for o in ("encode", "decode")
                                                    for b in (1, 64)}  # fmt: skip
    for r in tok:
        assert r["gflop_per_image"] > 0 and r["images_per_s"] > 0
        assert _close(r["achieved_gflop_per_s"], r["gflop_per_image"] * r["images_per_s"])
        assert _close(r["fraction_of_peak"], r["achieved_gflop_per_s"] * 1e9 / peak[r["precision"]])
        assert r["memory_peak_mib"] > 0, r  # a fresh child process's peak RSS
    for op in ("encode", "decode"):  # counted FLOPs per image do not depend on the batch
        one, many = ({r["batch"]: r["gflop_per_image"] for r in tok if r["op"] == op}[b]
                     for b in (1, 64))  # fmt: skip
        assert _close(one, many), (op, one, many)

    rf = sections_["rf"]
    assert [r["num_steps"] for r in rf["records"]] == [1, 2]
    one, two = (r["gflop_per_image"] for r in rf["records"])
    assert two > one > 0  # each step runs the network once more
    fit = rf["fit"]  # the line through two points passes through both
    for r in rf["records"]:
        line = fit["fixed_seconds_per_image"] + fit["seconds_per_step_per_image"] * r["num_steps"]
        assert math.isclose(line, r["seconds_per_image"], rel_tol=1e-6)

    codec = sections_["codec"]["records"]
    assert {r["op"] for r in codec} == {"encode", "decode"}
    for r in codec:
        assert r["files"] == 4 and r["files_per_s"] > 0 and r["bytes_out"] > 0
        assert _close(r["files_per_s"] * r["seconds_per_file"], 1.0)

    (train,) = sections_["training"]["records"]
    assert _close(train["ratio"], train["lightning_images_per_s"] / train["bare_images_per_s"])
    assert train["meets_goal"] == (train["ratio"] >= train["goal"])

    gpt = sections_["gpt"]
    assert gpt["options"] == {"preset": "gpt_tiny", "ks": [8, 16], "batch": 2, "vocab": 64,
                              "cfg": 2.0}  # fmt: skip
    assert {(r["K"], r["kv_cache"]) for r in gpt["records"]} == {
        (k, c) for k in (8, 16) for c in (True, False)
    }
    rates = {(r["K"], r["kv_cache"]): r["tokens_per_s"] for r in gpt["records"]}
    for r in gpt["records"]:
        assert _close(r["tokens_per_s"], r["batch"] * r["K"] / r["seconds"])
    assert set(gpt["kv_cache_speedup"]) == {"8", "16"}
    for k, speedup in gpt["kv_cache_speedup"].items():
        assert _close(speedup, rates[int(k), True] / rates[int(k), False])

    inception = sections_["inception"]
    assert inception["library_default_layout"] == "channels_last"
    assert {r["layout"] for r in inception["records"]} == {"contiguous", "channels_last"}
    for r in inception["records"]:
        assert r["within_tolerance"] and 0 <= r["relative_diff"] <= inception["tolerance"], r


def test_markdown_reports_failed_and_skipped_sections():
    from tokenizers_vis.benchmark.report import markdown

    meta = {"device_name": "Test CPU", "command": "vistok bench", "config": {}}
    sections_ = {"peak": {"records": [], "error": "RuntimeError: boom"},
                 "rf": {"records": [], "skipped": "no sampling decoder"}}  # fmt: skip
    md = markdown({"meta": meta, "sections": sections_})
    assert "Failed: RuntimeError: boom" in md and "Skipped: no sampling decoder" in md
