"""What `vistok eval` reports, and how: report.json, report.md, plots, a reconstruction grid.

Every file is rendered to bytes first and only then written, each to a temporary file in the
output folder that is renamed over its final name: a failed or interrupted run leaves either the
previous file or the new one, never half of one. Plots use matplotlib's Agg canvas directly
(no pyplot, so no global backend switch and no display needed).
"""

from __future__ import annotations

import io
import json
import math
import os
import uuid
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# (report key, column title, decimals); the perceptual metric is added under its own name.
METRICS = (
    ("rfid", "rFID", 2),
    ("kid_mean", "KID", 4),
    ("psnr", "PSNR", 2),
    ("ssim", "SSIM", 4),
    ("ms_ssim", "MS-SSIM", 4),
)
CODEC_TITLES = {"jpeg": "JPEG", "webp": "WebP"}


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    # Not tempfile.mkstemp: its files are private (0600); an output should get the umask's mode.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files(out: Path, files: dict[str, bytes]) -> list[Path]:
    """Write every rendered file into ``out`` (created if needed); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write(out / name, data)
    return [out / name for name in files]


def _plain(value):
    """JSON-able copy: tensors to lists, non-finite floats to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Tensor | np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def to_json(report: dict) -> bytes:
    return (json.dumps(_plain(report), indent=2, allow_nan=False) + "\n").encode()


def _nearest(rows: list[dict], target: float) -> dict:
    # rate.nearest_quality's "nearest" rule, on rows of already computed metrics.
    return min(rows, key=lambda r: abs(r["bytes_per_image"] - target))


def codecs_at_k(vistok: list[dict], codecs: dict[str, list[dict]]) -> list[dict]:
    """Per k and codec: the quality nearest k's byte budget, and metrics interpolated to it."""
    from tokenizers_vis.metrics import interpolate_at_bytes

    metrics = [m for m in vistok[0] if m not in ("k", "bits_per_image", "bytes_per_image")]
    out = []
    for row in vistok:
        entry = {"k": row["k"], "bytes_per_image": row["bytes_per_image"]}
        for codec, rows in codecs.items():
            xs = [r["bytes_per_image"] for r in rows]
            interp = {
                m: interpolate_at_bytes(xs, [r[m] for r in rows], row["bytes_per_image"])
                for m in metrics
            }
            entry[codec] = {
                "nearest": _nearest(rows, row["bytes_per_image"]),
                "interpolated": interp,
            }
        out.append(entry)
    return out


def usage_summary(ids: Tensor, vocab_sizes: tuple[int, ...]) -> dict:
    """Codebook usage and perplexity, overall and per position, of all K tokens."""
    from tokenizers_vis.metrics import CodebookUsage

    meter = CodebookUsage(vocab_sizes)
    meter.update(ids)
    stats = meter.compute()
    keep = ("usage", "entropy", "perplexity", "usage_per_position", "perplexity_per_position")
    out = {name: stats[name].tolist() for name in keep}
    out.update(k=ids.shape[1], usage_mean=stats["usage_mean"], num_tokens=stats["num_tokens"])
    out["perplexity_mean"] = stats["perplexity_mean"]
    return out


def tokenizer_report(tok, model: str, perceptual, vistok: list, codecs: dict, ids: Tensor) -> dict:
    """Everything ``vistok eval tokenizer`` measured (run metadata is added by the caller)."""
    from tokenizers_vis.hub import resolve
    from tokenizers_vis.metrics import bits_per_token

    return {
        "kind": "tokenizer",
        "model": {"name": model, "path": str(resolve(model).resolve()), "config": tok.config},
        "tokenizer": {
            "image_size": tok.image_size,
            "max_tokens": tok.max_tokens,
            "vocab_sizes": list(tok.vocab_sizes),
            "bits_per_token": bits_per_token(tok.vocab_sizes),
        },
        "perceptual": getattr(perceptual, "metric_name", None),
        "fid": "rfid" in vistok[0],
        "vistok": vistok,
        "codebook_usage": usage_summary(ids, tok.vocab_sizes),
        "codecs": codecs,
        "codecs_at_k": codecs_at_k(vistok, codecs) if codecs else [],
    }


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


def main_table(report: dict) -> str:
    """Markdown: per k, the tokenizer's row, then each codec at the quality nearest its bytes."""
    cols = metric_columns(report)
    head = ["method", "k / quality", "bytes"] + [title for _, title, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    at_k = {entry["k"]: entry for entry in report.get("codecs_at_k", [])}
    steps = report.get("encode", {}).get("refine_steps", 0)
    name = f"vistok (refined {steps})" if steps else "vistok"
    for row in report["vistok"]:
        rows = [(name, f"k={row['k']}", row)]
        for codec, near in at_k.get(row["k"], {}).items():
            if isinstance(near, dict) and "nearest" in near:
                point = near["nearest"]
                rows.append((f"{CODEC_TITLES[codec]} (nearest)", f"q={point['quality']}", point))
        for method, setting, values in rows:
            cells = [method, setting, _fmt(values["bytes_per_image"], 1)]
            cells += [_fmt(values.get(key), digits) for key, _, digits in cols]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sweep_table(report: dict, codec: str) -> str:
    cols = metric_columns(report)
    head = ["quality", "bytes"] + [title for _, title, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["codecs"][codec]:
        cells = [str(row["quality"]), _fmt(row["bytes_per_image"], 1)]
        cells += [_fmt(row.get(key), digits) for key, _, digits in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def _meta_section(meta: dict) -> str:
    extractor = meta.get("extractor") or {}
    lines = ["## Run", ""]
    for key, value in meta.items():
        if key != "extractor":
            lines.append(f"- {key}: `{value}`")
    if extractor:
        lines.append(f"- extractor: `{extractor['id']}`")
        lines.append(f"- extractor weights: `{extractor['weights']}` (sha1 `{extractor['sha1']}`)")
    return "\n".join(lines)


def tokenizer_markdown(report: dict) -> str:
    tok, meta = report["tokenizer"], report["meta"]
    intro = (
        f"# vistok eval: {report['model']['name']} on {meta['data']} / {meta['split']} "
        f"({meta['num_images']} images)\n\n"
        f"Model: `{report['model']['path']}`, K = {tok['max_tokens']}, "
        f"{tok['image_size']} px.\n\n"
        f"Bytes: tokens at {tok['bits_per_token']:.3f} bits each (vocabularies "
        f"{tok['vocab_sizes']}); codecs as whole files. rFID / KID against the originals; "
        f"perceptual distance: {report['perceptual'] or 'none'}. Codec rows: the quality whose "
        "mean bytes per image is nearest each k's."
    )
    parts = [intro, main_table(report)]
    for codec in report["codecs"]:
        parts += [f"## {CODEC_TITLES[codec]} sweep", _sweep_table(report, codec)]
    parts += [_usage_section(report["codebook_usage"]), _meta_section(meta)]
    return "\n\n".join(parts) + "\n"


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


def tokenizer_files(report: dict, grid: list[tuple[str, Tensor]]) -> dict[str, bytes]:
    """Every output of ``vistok eval tokenizer``, rendered."""
    return {
        "report.json": to_json(report),
        "report.md": tokenizer_markdown(_plain(report)).encode(),
        "metric_vs_k.png": plot_vs_k(report),
        "metric_vs_bytes.png": plot_vs_bytes(report),
        "reconstructions.png": grid_png(grid),
    }


def generator_files(report: dict) -> dict[str, bytes]:
    """Every output of ``vistok eval generator``, rendered."""
    return {"report.json": to_json(report), "report.md": generator_markdown(report).encode()}
