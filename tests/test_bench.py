"""`vistok bench`: the quick run writes every section, and the FLOP counter counts right.

The quick run is a smoke test of the machinery (timings of test-sized models, one repeat); the
numbers themselves are not checked, only that each section measured what it promises.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_vis.benchmark import SECTIONS, count_flops
from tokenizers_vis.benchmark.peak import flop_check
from tokenizers_vis.cli import bench

PACKAGE = Path(__file__).resolve().parents[1] / "tokenizers_vis"
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


def test_titok_encoder_counts_about_58_gflop():
    check = flop_check()
    assert abs(check["counted_gflop"] - 58.4) < 0.5, check
    assert abs(check["relative_difference"]) < 0.01


def test_tokenizers_vis_never_imports_generation_at_module_level():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "generation" for n in names), path


def test_model_list_and_bad_sections():
    assert bench.model_list("emoji32, vit_b16_k64_vq@1+4") == [
        ("emoji32", None),
        ("vit_b16_k64_vq", (1, 4)),
    ]
    with pytest.raises(SystemExit) as exc:
        bench.main(["--sections", "peak,nope"])
    assert exc.value.code == 2


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("bench")
    assert bench.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    (json_path,) = out.glob("bench-*-quick.json")
    return json.loads(json_path.read_text()), json_path.with_suffix(".md").read_text()


def test_quick_run_writes_every_section(quick_report):
    report, md = quick_report
    meta = report["meta"]
    assert meta["quick"] and meta["device"] == "cpu" and meta["cpu"]
    # Seconds on an idle 2-core machine; generous for a shared one.
    assert meta["wall_s"] < 120, meta["wall_s"]
    assert list(report["sections"]) == list(SECTIONS)
    for name, section in report["sections"].items():
        assert "error" not in section, (name, section.get("traceback"))
        assert section["records"], name
        for record in section["records"]:
            assert STAMP | KEYS[name] <= set(record), (name, sorted(record))
    assert f"# vistok benchmark: {meta['device_name']}" in md
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert len(headings) == len(SECTIONS)
    for title in ("Matmul peak", "Tokenizers", "Rectified-flow", "Codec", "Lightning", "GPT",
                  "TF-Inception"):  # fmt: skip
        assert any(title in h for h in headings), (title, headings)


def test_quick_run_measures_what_it_says(quick_report):
    sections = quick_report[0]["sections"]
    assert sections["peak"]["records"][0]["flops_per_s"] > 0
    assert abs(sections["peak"]["flop_check"]["relative_difference"]) < 0.01
    tok = sections["tokenizers"]["records"]
    assert {(r["op"], r["batch"]) for r in tok} == {(o, b) for o in ("encode", "decode")
                                                    for b in (1, 64)}  # fmt: skip
    for r in tok:
        assert r["gflop_per_image"] > 0 and 0 < r["fraction_of_peak"]
        assert r["memory_peak_mib"] > 0, r  # a fresh child process's peak RSS
    assert [r["num_steps"] for r in sections["rf"]["records"]] == [1, 2]
    assert sections["rf"]["fit"]["seconds_per_step_per_image"] is not None
    assert {r["op"] for r in sections["codec"]["records"]} == {"encode", "decode"}
    assert sections["training"]["records"][0]["ratio"] > 0
    assert set(sections["gpt"]["kv_cache_speedup"]) == {"8", "16"}
    inception = sections["inception"]
    assert inception["library_default_layout"] == "channels_last"
    assert {r["layout"] for r in inception["records"]} == {"contiguous", "channels_last"}
    assert all(r["within_tolerance"] for r in inception["records"])


def test_markdown_reports_failed_and_skipped_sections():
    from tokenizers_vis.benchmark.report import markdown

    meta = {"device_name": "Test CPU", "command": "vistok bench", "config": {}}
    sections = {"peak": {"records": [], "error": "RuntimeError: boom"},
                "gpt": {"records": [], "skipped": "generation is not installed"}}  # fmt: skip
    md = markdown({"meta": meta, "sections": sections})
    assert "Failed: RuntimeError: boom" in md and "Skipped: generation is not installed" in md
