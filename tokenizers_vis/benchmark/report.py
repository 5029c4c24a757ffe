"""The report: JSON with every record, and a Markdown summary of it beside, both atomic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers_vis.atomic import atomic_write


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 0.01:
            return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        return f"{value:.2e}"
    return str(value)


def table(records: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    """Markdown table of `records`: (key, header) per column."""
    if not records:
        return ["(no records)"]
    lines = ["| " + " | ".join(h for _, h in columns) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|")
    for r in records:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in columns) + " |")
    return lines


def _pct(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r | {"pct_peak": None if r.get("fraction_of_peak") is None
                 else 100 * r["fraction_of_peak"]} for r in records]  # fmt: skip


COLUMNS: dict[str, list[tuple[str, str]]] = {
    "peak": [("dtype", "dtype"), ("when", "measured"), ("n", "n"), ("flops_per_s", "FLOP/s"),
             ("median_flops_per_s", "median FLOP/s")],
    "tokenizers": [
        ("model", "model"), ("op", "op"), ("batch", "batch"), ("num_steps", "steps"),
        ("images_per_s", "images/s"), ("gflop_per_image", "GFLOP/image"),
        ("achieved_gflop_per_s", "GFLOP/s"), ("pct_peak", "% of peak"),
        ("memory_peak_mib", "peak MiB (process)"), ("memory_extra_mib", "MiB for the call"),
    ],
    "rf": [
        ("model", "model"), ("batch", "batch"), ("num_steps", "steps"),
        ("seconds_per_image", "s/image"), ("images_per_s", "images/s"),
        ("gflop_per_image", "GFLOP/image"), ("pct_peak", "% of peak"),
    ],
    "codec": [
        ("model", "model"), ("op", "op"), ("files", "files"), ("image_size", "px"),
        ("files_per_s", "files/s"), ("bytes_out", "bytes out"),
    ],
    "training": [
        ("model", "model"), ("batch", "batch"), ("lightning_precision", "precision"),
        ("lightning_images_per_s", "Lightning images/s"), ("bare_images_per_s", "bare images/s"),
        ("ratio", "ratio"), ("meets_goal", ">= 0.95"),
    ],
    "inception": [
        ("path", "path"), ("layout", "layout"), ("grad_mode", "grad mode"), ("batch", "batch"),
        ("threads", "threads"), ("images_per_s", "images/s"), ("speedup", "speed-up"),
        ("pct_peak", "% of fp32 peak"), ("max_abs_diff", "max abs diff"),
        ("relative_diff", "relative diff"),
    ],
    "reference": [
        ("model", "model"), ("op", "op"), ("precision", "precision"), ("batch", "batch"),
        ("reference_images_per_s", "reference images/s"),
        ("vistok_images_per_s", "vistok images/s"), ("speedup", "vistok / reference"),
        ("speedup_quartiles", "quartiles"), ("speedup_of_medians", "ratio of medians"),
        ("repeats", "pairs"), ("meets_goal", ">= 1.2"), ("linear", "vistok's fp32 linear"),
        ("other_linear", "other library"), ("vistok_other_images_per_s", "vistok, other images/s"),
        ("speedup_other", "(other) / reference"),
    ],
}  # fmt: skip

TITLES = {
    "peak": "Matmul peak", "tokenizers": "Tokenizers", "rf": "Rectified-flow decoder steps",
    "codec": "Codec files", "training": "Training: Lightning vs bare PyTorch",
    "inception": "TF-Inception features",
    "reference": "Converted TiTok vs the reference implementation",
}  # fmt: skip


def _percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _notes(name: str, section: dict[str, Any]) -> list[str]:
    notes = []
    if section.get("error"):
        notes.append(f"Failed: {section['error']} (traceback in the JSON report).")
    if isinstance(section.get("skipped"), str):
        notes.append(f"Skipped: {section['skipped']}")
    if name == "peak" and "flop_check" in section:
        best = ", ".join(
            f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in section["peak_flops_per_s"].items()
        )
        notes.append(f"Peak used for every fraction (best of the run's measurements): {best}.")
        notes += [f"Not measured: {k}: {why}." for k, why in section.get("skipped", {}).items()]
        check = section["flop_check"]
        notes.append(f"FLOP counter check: {check['model']}: {check['counted_gflop']:.2f} GFLOP "
                     f"counted, {check['hand_gflop']:.2f} by hand.")  # fmt: skip
    if name == "rf" and section.get("fit"):
        fit = section["fit"]
        fixed, per_step = fit["fixed_seconds_per_image"], fit["seconds_per_step_per_image"]
        notes.append(f"Per image: {fixed:.4g} s + {per_step:.4g} s per step (least squares).")
    if name == "inception" and section.get("records"):
        gflop, layout = section["gflop_per_image"], section["library_default_layout"]
        speedup = section["library_default_speedup"]
        notes.append(f"{gflop:.2f} GFLOP per image (counted). Library default layout: {layout}, "
                     f"{speedup:.2f}x the previous default path.")  # fmt: skip
    for r in section.get("suite_records", []) if name == "inception" else []:
        fp32, bf16 = _percent(r["fraction_of_peak"]), _percent(r["fraction_of_bf16_peak"])
        notes.append(f"Suite pass ({r['path']}: {r['image_size']} px uint8, batch {r['batch']}): "
                     f"{r['images_per_s']:.2f} images/s, {fp32} of the {r['precision']} peak, "
                     f"{bf16} of the bf16 peak; pool features {r['relative_diff']:.1e} relative "
                     "from fp32.")  # fmt: skip
    if name == "reference" and section.get("agreement_fp32"):
        agree, commit = section["agreement_fp32"], section.get("reference_commit") or "unknown"
        notes.append(f"Reference: {section['reference']} at {commit}. Same weights (its seeded "
                     f"init, converted), same images and ids; fp32 agreement: "
                     f"{100 * agree['ids_equal']:.1f}% equal ids, decoded pixels within "
                     f"{agree['decode_max_abs_diff']:.2e}.")  # fmt: skip
    return notes + [str(n) for n in section.get("notes", [])]  # a plug-in section's own


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [f"# vistok benchmark: {meta['device_name']}", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in meta.items() if k not in ("command", "config")]
    lines += [f"- command: `{meta['command']}`", ""]
    for name, section in report["sections"].items():
        # Built-in sections are described here; an installed one carries its title and columns.
        lines += [f"## {TITLES.get(name) or section.get('title') or name}", ""]
        columns = COLUMNS.get(name) or [tuple(c) for c in section.get("columns", [])]
        lines += table(_pct(section.get("records", [])), columns)
        notes = _notes(name, section)
        lines += ([""] + notes if notes else []) + [""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: str | Path, stem: str) -> tuple[Path, Path]:
    """Write `<out>/<stem>.json` and `<out>/<stem>.md` atomically; returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write(json_path, (json.dumps(report, indent=1) + "\n").encode())
    atomic_write(md_path, (markdown(report) + "\n").encode())
    return json_path, md_path
