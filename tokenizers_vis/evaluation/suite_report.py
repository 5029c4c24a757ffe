"""report.json / report.md of a suite evaluation: the protocol, the extractor's sha1, the image
counts and the command sit beside the numbers, so a table can be traced to how it was made."""

from __future__ import annotations

from pathlib import Path

from tokenizers_vis.evaluation.report import (
    METRICS,
    _fmt,
    extractor_line,
    metric_table,
    to_json,
    write_files,
)


def suite_table(report: dict) -> str:
    """Markdown: one row per k (tokenizer) or one row (generator); absent metrics dropped."""
    rows = [r for r in report["rows"] if r.get("k") != "original"]
    cols = [c for c in METRICS if any(r.get(c[0]) is not None for r in rows)]
    return metric_table(rows, cols, per_k=report["kind"] == "tokenizer")


def suite_markdown(report: dict) -> str:
    meta, proto = report["meta"], report["protocol"]
    ex = meta.get("extractor") or {}
    what = meta.get("model", {}).get("name") if report["kind"] == "tokenizer" else meta["samples"]
    lines = [
        f"# vistok eval {report['kind']}: {what}",
        "",
        f"- protocol: `{proto.get('name')}` ({proto.get('image_size')} px): "
        f"{proto.get('preprocessing')}",
        extractor_line(ex),
        f"- images: {meta['images']} scored of {meta['listed']} listed, {meta['failed']} "
        f"unreadable; {meta.get('cached_batches', 0)} batches from the feature cache",
    ]
    if "reference" in meta:
        ref = meta["reference"]
        lines.append(
            f"- reference: `{ref['path']}` (statistics from the {ref['statistics']}, "
            f"{ref['feature_images']} images' features for precision / recall)"
        )
    if meta.get("command"):
        lines.append(f"- command: `{meta['command']}`")
    notes = {r.get("notes") for r in report["rows"] if r.get("notes")}
    lines += [f"- note: {n}" for n in sorted(notes)]
    original = [r for r in report["rows"] if r.get("k") == "original"]
    if original:
        lines.append(f"- IS of the originals: {_fmt(original[0]['inception_score'], 2)}")
    for name, why in meta.get("failed_files", [])[:20]:
        lines.append(f"- unreadable: `{name}`: {why}")
    return "\n".join([*lines, "", suite_table(report), ""])


def write_suite_report(result, out: str | Path) -> list[Path]:
    """report.json and report.md into ``out``, each atomically."""
    report = result.to_dict()
    return write_files(
        out, {"report.json": to_json(report), "report.md": suite_markdown(report).encode()}
    )
