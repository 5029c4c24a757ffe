"""Writers of an evaluation's results: report.json, report.md, plots, a reconstruction grid.

They take a `TokenizerEvaluation` / `GeneratorEvaluation` (or its `to_dict()`); computing and
writing stay apart, so a notebook or a training callback can call `evaluate_tokenizer` and use
only the writers it wants. Every file is rendered to bytes first and then written atomically
(a temporary file renamed over the final name): an interrupted run leaves the previous file or
the new one, never half of one. Plots use matplotlib's Agg canvas directly (no pyplot, so no
global backend switch and no display needed).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tokenizers_vis.atomic import atomic_write

# (report key, column title, decimals), in table order, for every report (the per-k sweep and the
# protocol suite); the perceptual metric is added under its own name.
METRICS = (
    ("rfid", "rFID", 2),
    ("fid", "FID", 2),
    ("sfid", "sFID", 2),
    ("inception_score", "IS", 2),
    ("precision", "Prec.", 3),
    ("recall", "Rec.", 3),
    ("kid_mean", "KID", 4),
    ("psnr", "PSNR", 2),
    ("ssim", "SSIM", 4),
    ("ms_ssim", "MS-SSIM", 4),
)
CODEC_TITLES = {"jpeg": "JPEG", "webp": "WebP"}


def write_files(out: str | Path, files: dict[str, bytes]) -> list[Path]:
    """Write every rendered file into `out` (created if needed); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [atomic_write(out / name, data) for name, data in files.items()]


def plain(value):
    """JSON-able copy: tensors to lists, non-finite floats to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Tensor | np.ndarray):
        return plain(value.tolist())
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def to_json(report: dict) -> bytes:
    return (json.dumps(plain(report), indent=2, allow_nan=False) + "\n").encode()


def metric_columns(report: dict) -> list[tuple[str, str, int]]:
    """The metrics this report has, in table order."""
    cols = [m for m in METRICS if m[0] in report["vistok"][0]]
    if report.get("perceptual"):
        cols.append((report["perceptual"], report["perceptual"], 4))
    return cols


def _fmt(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "–" if value is None or math.isnan(value) else str(value)
    return f"{value:.{digits}f}"


def _cells(values: dict, cols: list[tuple[str, str, int]]) -> list[str]:
    return [_fmt(values.get(key), digits) for key, _, digits in cols]


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def metric_table(rows: list[dict], cols: list[tuple[str, str, int]], per_k: bool) -> str:
    """Markdown: one line per row; ``per_k`` leads with the token count and bytes."""
    lead = ["k", "bytes"] if per_k else []
    body = [
        ([str(r["k"]), _fmt(r["bytes_per_image"], 1)] if per_k else []) + _cells(r, cols)
        for r in rows
    ]
    return _table(lead + [title for _, title, _ in cols], body)


def main_table(report: dict) -> str:
    """Markdown: the tokenizer's metrics, one row per k."""
    steps = report.get("encode", {}).get("refine_steps", 0)
    title = f"vistok, refined tokens ({steps} steps)" if steps else "vistok"
    return f"**{title}**\n\n" + metric_table(report["vistok"], metric_columns(report), True)


def equal_bytes_section(report: dict) -> str:
    """Markdown: each codec's metrics at k's bytes (interpolated between measured qualities),
    only where k's bytes lie inside the codec's range; otherwise one line saying how small the
    codec's smallest file is, and what it scores."""
    codecs = report.get("codecs") or {}
    if not codecs:
        return ""
    key, title, digits = next(
        (c for c in metric_columns(report) if c[0] == "psnr"), metric_columns(report)[0]
    )
    parts, head, rows = [], ["k", "bytes", f"vistok {title}"], []
    for codec in codecs:
        head.append(f"{CODEC_TITLES[codec]} {title}")
    for entry, row in zip(report["codecs_at_k"], report["vistok"], strict=True):
        inside = [entry[c]["interpolated"] for c in codecs]
        if any(v is not None for v in inside):
            cells = [_fmt(v[key], digits) if v is not None else "out of range" for v in inside]
            rows.append([str(row["k"]), _fmt(row["bytes_per_image"], 1), _fmt(row[key], digits)])
            rows[-1] += cells
    if rows:
        parts.append(_table(head, rows))
    top = report["vistok"][-1]
    for codec, codec_rows in codecs.items():
        low = min(codec_rows, key=lambda r: r["bytes_per_image"])
        if low["bytes_per_image"] > top["bytes_per_image"]:
            parts.append(
                f"- {CODEC_TITLES[codec]}'s smallest file (q={low['quality']}) is "
                f"{_fmt(low['bytes_per_image'], 1)} B at {title} {_fmt(low.get(key), digits)}: "
                f"larger than every token budget here (vistok k={top['k']}: "
                f"{_fmt(top['bytes_per_image'], 1)} B at {_fmt(top.get(key), digits)})."
            )
    return "\n\n".join(parts)


def sweep_table(report: dict, codec: str) -> str:
    cols = metric_columns(report)
    head = ["quality", "bytes"] + [title for _, title, _ in cols]
    rows = [
        [str(r["quality"]), _fmt(r["bytes_per_image"], 1)] + _cells(r, cols)
        for r in report["codecs"][codec]
    ]
    return _table(head, rows)


def _usage_section(usage: dict) -> str:
    def joined(values: list[float]) -> str:
        return " / ".join(_fmt(v, 3) for v in values)

    lines = [
        f"## Codebook usage at k = {usage['k']}",
        "",
        f"Used fraction per sub-codebook: {joined(usage['usage'])}; "
        f"perplexity: {joined(usage['perplexity'])} (effective number of codes).",
        "",
        "| position | usage | perplexity |",
        "|---|---|---|",
    ]
    for i, (used, ppl) in enumerate(
        zip(usage["usage_per_position"], usage["perplexity_per_position"], strict=True)
    ):
        lines.append(f"| {i} | {joined(used)} | {joined(ppl)} |")
    return "\n".join(lines)


def extractor_line(extractor: dict) -> str:
    """The one line every report gives its feature extractor: what it is, from which file."""
    where = f"`{extractor['weights']}`, " if extractor.get("weights") else ""
    return f"- extractor: `{extractor.get('id')}` (weights {where}sha1 `{extractor.get('sha1')}`)"


def _meta_section(meta: dict) -> str:
    extractor = meta.get("extractor") or {}
    lines = ["## Run", ""]
    for key, value in meta.items():
        if key != "extractor":
            lines.append(f"- {key}: `{value}`")
    if extractor:
        lines.append(extractor_line(extractor))
    return "\n".join(lines)


def tokenizer_markdown(report: dict) -> str:
    tok, meta = report["tokenizer"], report["meta"]
    where = f"{meta['data']} / {meta['split']}" if meta.get("split") else meta["data"]
    intro = (
        f"# vistok eval: {report['model']['name']} on {where} ({meta['num_images']} images)\n\n"
        f"Model: `{report['model']['path']}`, K = {tok['max_tokens']}, "
        f"{tok['image_size']} px. Bytes: tokens at {tok['bits_per_token']:.3f} bits each "
        f"(vocabularies {tok['vocab_sizes']}); codecs as whole files. rFID / KID against the "
        f"originals; perceptual distance: {report['perceptual'] or 'none'}."
    )
    parts = [intro, main_table(report)]
    if report["codecs"]:
        parts += ["## At equal bytes", equal_bytes_section(report)]
    for codec in report["codecs"]:
        parts += [f"## {CODEC_TITLES[codec]}, every quality", sweep_table(report, codec)]
    parts += [_usage_section(report["codebook_usage"]), _meta_section(meta)]
    return "\n\n".join(p for p in parts if p) + "\n"


def generator_markdown(report: dict) -> str:
    meta, samples = report["meta"], report["samples"]
    return (
        f"# vistok eval: generator samples\n\n"
        f"{samples['num_samples']} samples from `{samples['path']}` against "
        f"{meta['num_images']} images of {meta['data']} / {meta['split']} at "
        f"{report['reference_size']} px.\n\n"
        "| gFID | KID | KID std |\n|---|---|---|\n"
        f"| {_fmt(report['gfid'], 3)} | {_fmt(report['kid_mean'], 5)} "
        f"| {_fmt(report['kid_std'], 5)} |\n\n" + _meta_section(meta) + "\n"
    )


def _figure(panels: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(3, panels)
    rows = -(-panels // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(panels)]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def plot_vs_k(report: dict) -> bytes:
    cols = metric_columns(report)
    fig, axes = _figure(len(cols))
    ks = [row["k"] for row in report["vistok"]]
    for ax, (key, title, _) in zip(axes, cols, strict=True):
        ax.plot(ks, [row.get(key) for row in report["vistok"]], "o-", label="vistok")
        ax.set(xscale="log", xlabel="tokens k", title=title)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_vs_bytes(report: dict) -> bytes:
    cols = metric_columns(report)
    fig, axes = _figure(len(cols))
    curves = [("vistok", report["vistok"], "o-")]
    curves += [(CODEC_TITLES[c], rows, "s--") for c, rows in report["codecs"].items()]
    for ax, (key, title, _) in zip(axes, cols, strict=True):
        for label, rows, style in curves:
            xs = [row["bytes_per_image"] for row in rows]
            ax.plot(xs, [row.get(key) for row in rows], style, label=label, markersize=4)
        for row in report["vistok"]:
            ax.annotate(f"k={row['k']}", (row["bytes_per_image"], row.get(key)), fontsize=7)
        ax.set(xscale="log", xlabel="bytes per image", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    return _png(fig)


def grid_png(rows: list[tuple[str, Tensor]], min_side: int = 64) -> bytes:
    """A labelled grid: one row per (label, images (b, 3, h, w) in [-1, 1]).

    Drawn with Pillow, not matplotlib: pixel-exact (nearest-neighbour upscaling to at least
    ``min_side`` px, so 16 px images stay legible) and much faster than an imshow figure.
    """
    from PIL import Image, ImageDraw

    from tokenizers_vis.data.transforms import to_uint8

    pad, label_width = 2, 64
    scale = max(1, -(-min_side // rows[0][1].shape[-1]))
    strips = []
    for _, images in rows:
        big = to_uint8(images).repeat_interleave(scale, -1).repeat_interleave(scale, -2)
        big = torch.nn.functional.pad(big, (pad,) * 4, value=255)  # (b 3 h' w')
        strips.append(torch.cat(list(big), dim=-1))  # (3 h' b*w')
    grid = torch.cat(strips, dim=-2).permute(1, 2, 0).numpy()  # (H W 3)
    canvas = Image.new("RGB", (grid.shape[1] + label_width, grid.shape[0]), "white")
    canvas.paste(Image.fromarray(grid), (label_width, 0))
    draw, step = ImageDraw.Draw(canvas), grid.shape[0] / len(rows)
    for i, (label, _) in enumerate(rows):
        draw.text((4, step * (i + 0.5)), label, fill="black", anchor="lm")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def tokenizer_files(result: Any) -> dict[str, bytes]:
    """Every output of a tokenizer evaluation, rendered: report.json, report.md, two plots and
    the reconstruction grid."""
    report = result.to_dict()
    files = {
        "report.json": to_json(report),
        "report.md": tokenizer_markdown(plain(report)).encode(),
        "metric_vs_k.png": plot_vs_k(report),
        "metric_vs_bytes.png": plot_vs_bytes(report),
    }
    if result.grid:
        files["reconstructions.png"] = grid_png(result.grid)
    return files


def generator_files(result: Any) -> dict[str, bytes]:
    """Every output of a generator evaluation, rendered."""
    report = result.to_dict()
    return {"report.json": to_json(report), "report.md": generator_markdown(report).encode()}


def write_report(result: Any, out: str | Path) -> list[Path]:
    """Render and write every file of a `TokenizerEvaluation` or `GeneratorEvaluation`."""
    kind = result.to_dict()["kind"]
    files = tokenizer_files(result) if kind == "tokenizer" else generator_files(result)
    return write_files(out, files)


def write_json(result: Any, path: str | Path) -> Path:
    """report.json alone."""
    return atomic_write(path, to_json(result.to_dict()))


def write_markdown(result: Any, path: str | Path) -> Path:
    """report.md alone."""
    report = plain(result.to_dict())
    text = (
        tokenizer_markdown(report) if report["kind"] == "tokenizer" else generator_markdown(report)
    )
    return atomic_write(path, text.encode())
