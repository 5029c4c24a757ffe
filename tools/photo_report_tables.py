"""The tables and plots of `tools/photo_report.py`, from its rows alone (pure functions).

Rows (one list in rows.json, each with a "section"):
- "crops": one per contestant and point: contestant ("photo64", "photo32", "jpeg", "webp"),
  k or quality, bytes_per_image (whole token / JPEG / WebP files), token_bytes (tokens only),
  bpp, psnr, ssim, ms_ssim, perceptual, rfid, kid_mean, kid_std.
- "whole": one per contestant, photo and bpp budget: bytes, bpp, psnr, ssim (no "bytes" when
  the contestant cannot reach the budget).
- "patches": one per contestant and budget: rfid, kid_mean, perceptual over the 64 px patches
  of every photo (only when all photos reached the budget).
- "sweep": JPEG / WebP per photo at every quality (bpp, psnr): the anchors of the BD-rates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tokenizers_vis.atomic import atomic_write, atomic_write_with
from tokenizers_vis.metrics import bjontegaard, interpolate_at_bytes

CODECS = ("jpeg", "webp")
NAMES = {"jpeg": "JPEG", "webp": "WebP", "psnr": "PSNR", "rfid": "rFID"}
METRICS = ("psnr", "ssim", "perceptual", "rfid")


def section(rows: list[dict], name: str) -> list[dict]:
    return [r for r in rows if r["section"] == name]


def contestants(rows: list[dict]) -> list[str]:
    """Token contestants (models) in the order measured, then the codecs."""
    names = list(dict.fromkeys(r["contestant"] for r in rows))
    return [n for n in names if n not in CODECS] + [c for c in CODECS if c in names]


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def equal_bytes(points: list[dict], codec_rows: list[dict]) -> list[dict]:
    """Per token point: the codec's metrics linearly interpolated to its bytes per image; None
    where the codec's files are all larger or all smaller (as `TokenizerEvaluation.equal_bytes`)."""
    xs = [r["bytes_per_image"] for r in codec_rows]
    out = []
    for p in points:
        at = {
            m: interpolate_at_bytes(xs, [r[m] for r in codec_rows], p["bytes_per_image"])
            for m in METRICS
            if codec_rows and m in codec_rows[0]
        }
        reached = bool(at) and not math.isnan(next(iter(at.values())))
        out.append(at if reached else None)
    return out


def _bd(anchor: list[dict], test: list[dict], rate: str, metric: str) -> str:
    """One BD-rate cell (anchor at its file bytes, test at `rate`): percent, or "-" and why."""
    lower = metric != "psnr"
    got = bjontegaard(
        [r["bytes_per_image"] for r in anchor],
        [r[metric] for r in anchor],
        [r[rate] for r in test],
        [r[metric] for r in test],
        lower_is_better=lower,
    )
    if got.rate is None:
        return f"- ({got.rate_reason})"
    unit = "dB" if metric == "psnr" else ""
    shift = "no shared bytes" if got.quality is None else f"{got.quality:+.2f}{unit}"
    return f"{got.rate:+.1f} % (BD-{NAMES.get(metric, metric)}: {shift})"


def crop_tables(rows: list[dict]) -> list[str]:
    """Per-k, per-quality, equal-bytes and BD-rate tables of the 64 px crops."""
    crops = section(rows, "crops")
    out = [
        "| contestant | k / quality | file B | token B | bpp | PSNR | SSIM | MS-SSIM "
        "| perceptual | rFID | KID x1000 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in crops:
        point = r["k"] if r.get("k") is not None else f"q{r['quality']}"
        out.append(
            f"| {r['contestant']} | {point} | {r['bytes_per_image']:.1f} "
            f"| {fmt(r.get('token_bytes'), 1)} | {r['bpp']:.3f} | {fmt(r['psnr'])} "
            f"| {fmt(r['ssim'], 3)} | {fmt(r.get('ms_ssim'), 3)} | {fmt(r.get('perceptual'), 3)} "
            f"| {fmt(r.get('rfid'), 1)} | {fmt(_kid(r), 2)} |"
        )
    codecs = {c: [r for r in crops if r["contestant"] == c] for c in CODECS}
    models = [m for m in contestants(crops) if m not in CODECS]
    out += [
        "",
        "Equal bytes (each codec interpolated to the token file's bytes; - = the codec "
        "has no file that small or that large):",
        "",
        "| model | k | file B | PSNR | JPEG | WebP | rFID | JPEG | WebP | perceptual | WebP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in models:
        points = [r for r in crops if r["contestant"] == model]
        at = {c: equal_bytes(points, codecs[c]) for c in CODECS}
        for i, p in enumerate(points):
            j, w = at["jpeg"][i] or {}, at["webp"][i] or {}
            out.append(
                f"| {model} | {p['k']} | {p['bytes_per_image']:.1f} | {fmt(p['psnr'])} "
                f"| {fmt(j.get('psnr'))} | {fmt(w.get('psnr'))} | {fmt(p.get('rfid'), 1)} "
                f"| {fmt(j.get('rfid'), 1)} | {fmt(w.get('rfid'), 1)} "
                f"| {fmt(p.get('perceptual'), 3)} | {fmt(w.get('perceptual'), 3)} |"
            )
    out += [
        "",
        "BD-rate against the codec's quality sweep (negative: the model needs fewer bytes for "
        "the same PSNR / rFID; in parentheses the mean PSNR / rFID difference at equal bytes); "
        "the last column counts the model's tokens only (no header):",
        "",
        "| model | anchor | BD-rate (PSNR) | BD-rate (rFID) | BD-rate (PSNR), tokens only |",
        "|---|---|---|---|---|",
    ]
    for model, codec in ((m, c) for m in models for c in ("webp", "jpeg")):
        points = [r for r in crops if r["contestant"] == model]
        if not codecs[codec]:
            continue
        cells = [_bd(codecs[codec], points, "bytes_per_image", m) for m in ("psnr", "rfid")]
        cells.append(_bd(codecs[codec], points, "token_bytes", "psnr"))
        out.append(f"| {model} | {NAMES[codec]} | " + " | ".join(cells) + " |")
    return out + ["", *crop_goals(crops, models, codecs)]


def _kid(r: dict) -> float | None:
    return None if r.get("kid_mean") is None else 1000 * r["kid_mean"]


def crop_goals(crops: list[dict], models: list[str], codecs: dict) -> list[str]:
    """Issue 25's goals on the crops, stated from the rows."""
    out = []
    for model in models:
        points = [r for r in crops if r["contestant"] == model]
        webp = equal_bytes(points, codecs.get("webp", []))
        pairs = [(p, w) for p, w in zip(points, webp, strict=True) if w is not None]
        if not pairs:
            out.append(f"- {model}: WebP reaches none of its file sizes.")
            continue
        gap = max(w["psnr"] - p["psnr"] for p, w in pairs)
        lower = [p["k"] for p, w in pairs if "rfid" in w and p["rfid"] < w["rfid"]]
        reached = ", ".join(str(p["k"]) for p, _ in pairs)
        out.append(
            f"- {model} where WebP reaches the bytes (k = {reached}): "
            f"worst PSNR gap {gap:+.2f} dB (goal: under 3 dB: {'met' if gap < 3 else 'not met'}); "
            f"lower rFID than WebP at k = {', '.join(map(str, lower)) or 'none'} "
            f"(goal: all: {'met' if len(lower) == len(pairs) else 'not met'})."
        )
    return out


def whole_tables(rows: list[dict]) -> list[str]:
    """Means per budget with the patch rFID, per-photo PSNR, and per-photo BD-rates."""
    whole, patches = section(rows, "whole"), section(rows, "patches")
    names = contestants(whole)
    bpps = sorted({r["bpp_budget"] for r in whole})
    pooled = {(r["contestant"], r["bpp_budget"]): r for r in patches}
    out = [
        "| contestant | bpp budget | photos | mean bpp | PSNR | SSIM | patch rFID "
        "| KID x1000 | perceptual |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, bpp in ((n, b) for n in names for b in bpps):
        got = [
            r for r in whole if (r["contestant"], r["bpp_budget"]) == (name, bpp) and "bytes" in r
        ]
        if not got:
            out.append(f"| {name} | {bpp} | 0 | - | - | - | - | - | - |")
            continue
        p = pooled.get((name, bpp), {})
        mean = {m: float(np.mean([r[m] for r in got])) for m in ("bpp", "psnr", "ssim")}
        out.append(
            f"| {name} | {bpp} | {len(got)} | {mean['bpp']:.3f} | {mean['psnr']:.2f} "
            f"| {mean['ssim']:.3f} | {fmt(p.get('rfid'), 1)} | {fmt(_kid(p), 2)} "
            f"| {fmt(p.get('perceptual'), 3)} |"
        )
    photos = list(dict.fromkeys(r["photo"] for r in whole))
    find = {(r["contestant"], r["photo"], r["bpp_budget"]): r for r in whole}
    out += [
        "",
        "PSNR dB per photo (bytes of the file):",
        "",
        "| photo | bpp budget | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for photo, bpp in ((p, b) for p in photos for b in bpps):
        cells = [find.get((n, photo, bpp), {}) for n in names]
        text = [f"{c['psnr']:.2f} ({c['bytes']})" if "bytes" in c else "-" for c in cells]
        out.append(f"| {photo} | {bpp} | " + " | ".join(text) + " |")
    return out + [
        "",
        *whole_bd(rows, names, photos),
        "",
        *whole_goals(whole, patches, section(rows, "sweep")),
    ]


def whole_bd(rows: list[dict], names: list[str], photos: list[str]) -> list[str]:
    """BD-rate (PSNR, bpp) of each model's budget points against each codec's quality sweep,
    per photo, and their mean over the photos where it is defined."""
    sweep, whole, notes = section(rows, "sweep"), section(rows, "whole"), []
    out = [
        "BD-rate (PSNR) per photo against the codec's full quality sweep on that photo:",
        "",
        "| model | anchor | " + " | ".join(photos) + " | mean |",
        "|---|---|" + "---|" * (len(photos) + 1),
    ]
    for model, codec in ((m, c) for m in names if m not in CODECS for c in ("webp", "jpeg")):
        cells, values = [], []
        for photo in photos:
            anchor = [r for r in sweep if (r["contestant"], r["photo"]) == (codec, photo)]
            test = [r for r in whole if (r["contestant"], r["photo"]) == (model, photo)]
            test = [r for r in test if "bytes" in r]
            got = bjontegaard(
                [r["bpp"] for r in anchor],
                [r["psnr"] for r in anchor],
                [r["bpp"] for r in test],
                [r["psnr"] for r in test],
            )
            cells.append("-" if got.rate is None else f"{got.rate:+.1f} %")
            if got.rate is None:
                notes.append(f"{model} against {NAMES[codec]} on {photo}: {got.rate_reason}")
            else:
                values.append(got.rate)
        mean = f"{np.mean(values):+.1f} % ({len(values)})" if values else "-"
        out.append(f"| {model} | {NAMES[codec]} | " + " | ".join(cells) + f" | {mean} |")
    return out + ["", *[f"- {n}" for n in notes]]


def whole_goals(whole: list[dict], patches: list[dict], sweep: list[dict]) -> list[str]:
    """Issue 25's whole-photo goal: a lower patch rFID than JPEG at equal bytes below 0.1 bpp."""
    pooled = {(r["contestant"], r["bpp_budget"]): r for r in patches}
    out = []
    for model in [n for n in contestants(whole) if n not in CODECS]:
        for bpp in sorted({r["bpp_budget"] for r in whole if r["bpp_budget"] < 0.1}):
            m, j = pooled.get((model, bpp)), pooled.get(("jpeg", bpp))
            if m is None or "rfid" not in m:
                continue
            verdict = (
                "JPEG has no file that small of every photo"
                if j is None
                else f"JPEG {j['rfid']:.1f}: {'lower' if m['rfid'] < j['rfid'] else 'not lower'}"
            )
            out.append(f"- {model} at {bpp} bpp: patch rFID {m['rfid']:.1f}; {verdict}.")
    smallest = {}
    for r in sweep:
        key = (r["contestant"], r["photo"])
        smallest[key] = min(smallest.get(key, r["bpp"]), r["bpp"])
    for codec in CODECS:
        sizes = [f"{p} {b:.3f}" for (c, p), b in smallest.items() if c == codec]
        if sizes:
            out.append(
                f"- {NAMES[codec]}'s smallest file (lowest quality), bpp: {', '.join(sizes)}."
            )
    return out


def plot(rows: list[dict], path: Path, which: str) -> None:
    """PSNR and rFID against bpp for every contestant of one section ("crops" or "whole")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = contestants(section(rows, "crops" if which == "crops" else "whole"))
    for color, name in zip((f"C{i}" for i in range(len(names))), names, strict=True):
        curve = _curve(rows, which, name)
        for ax, metric in zip(axes, ("psnr", "rfid"), strict=True):
            pts = [
                (x, y) for x, y in zip(curve["bpp"], curve[metric], strict=True) if y is not None
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=name, color=color)
        if which == "crops" and name not in CODECS:  # what the header costs at small k
            got = [r for r in section(rows, "crops") if r["contestant"] == name]
            bpp = [r["bpp"] * r["token_bytes"] / r["bytes_per_image"] for r in got]
            axes[0].plot(
                bpp,
                [r["psnr"] for r in got],
                ls="--",
                lw=1,
                color=color,
                label=f"{name} tokens only",
            )
    for ax, label in zip(
        axes, ("PSNR (dB)", "rFID" if which == "crops" else "patch rFID"), strict=True
    ):
        ax.set_xscale("log")
        ax.set(xlabel="bits per pixel", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
    title = "64 px held-out crops" if which == "crops" else "whole held-out photos (means)"
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _curve(rows: list[dict], which: str, name: str) -> dict[str, list]:
    if which == "crops":
        got = [r for r in section(rows, "crops") if r["contestant"] == name]
        return {m: [r.get(m) for r in got] for m in ("bpp", "psnr", "rfid")}
    pooled = {r["bpp_budget"]: r for r in section(rows, "patches") if r["contestant"] == name}
    whole = [r for r in section(rows, "whole") if r["contestant"] == name and "bytes" in r]
    curve: dict[str, list] = {"bpp": [], "psnr": [], "rfid": []}
    for bpp in sorted(pooled):  # budgets every photo reached
        got = [r for r in whole if r["bpp_budget"] == bpp]
        curve["bpp"].append(float(np.mean([r["bpp"] for r in got])))
        curve["psnr"].append(float(np.mean([r["psnr"] for r in got])))
        curve["rfid"].append(pooled[bpp].get("rfid"))
    return curve


CROPS_METHOD = (
    "{crops} fixed crops of the 4 test photos (`PhotoCropDataset('test', 64, zoom={zoom})`, seed "
    "{seed}; zoom [1, 32] is the validation set's multi-scale distribution, [1, 1] tiles of the "
    "photos at their own pixels). Token points: each crop encoded once, written as a .vtok file "
    "with the same k in every tile (photo32: 2x2 tiles of 32 px) and decoded by `Codec`; rate = "
    "{rate} (token B: the tokens alone, bit-packed, no header). JPEG (optimised Huffman) and WebP "
    "(method 6): whole files at every default quality. Metrics: `evaluation.scoring.Scorer` (rFID "
    "/ KID: TF-Inception; perceptual: {perceptual}); rFID of a few hundred images is biased "
    "upwards, compare it across rows, not with published FIDs. Equal bytes: the codec's metrics "
    "linearly interpolated in bytes between its two nearest qualities."
)
WHOLE_METHOD = (
    "The test photos resized (Lanczos) to at most {max_side} px. Each model: the file "
    "`vistok encode --target-bytes floor(bpp * w * h / 8)` writes ({rate}); JPEG / WebP: the "
    "highest quality whose file fits (- where none does). PSNR / SSIM over each photo, means "
    "over the photos reached. Patch rFID / KID / perceptual: {patches} patches of {patch_grid} "
    "(partial patches dropped) of the decoded photos against the same patches of the originals, "
    "pooled over all photos; only where a contestant reaches the budget on every photo. BD-rate "
    "per photo: the model's budget points against the codec's full quality sweep on that photo."
)


def _method(template: str, info: dict) -> str:
    keys = ("crops", "zoom", "seed", "rate", "perceptual", "max_side", "patches", "patch_grid")
    return template.format(**{k: info.get(k, "?") for k in keys})


def render(data: dict, out: Path) -> str:
    """README.md text, and the two plots written beside it."""
    info, rows = data["info"], data["rows"]
    parts = [
        "# Held-out photos: photo64 and photo32 against JPEG and WebP at equal bytes",
        "",
        "```bash",
        f"{info.get('env', 'OMP_NUM_THREADS=1')} {info['command']}".strip(),
        "```",
        "",
        *[f"- {k}: {json.dumps(v)}" for k, v in info.items() if k not in ("command", "env")],
        "",
    ]
    if section(rows, "crops"):
        plot(rows, out / "crops.png", "crops")
        parts += [
            "## 64 px held-out crops",
            "",
            _method(CROPS_METHOD, info),
            "",
            "![crops](crops.png)",
            "",
            *crop_tables(rows),
            "",
        ]
    if section(rows, "whole"):
        plot(rows, out / "whole.png", "whole")
        parts += [
            "## Whole held-out photos at a budget",
            "",
            _method(WHOLE_METHOD, info),
            "",
            "![whole](whole.png)",
            "",
            *whole_tables(rows),
            "",
        ]
    return "\n".join(parts)


def write(data: dict, out: Path) -> None:
    atomic_write(out / "rows.json", json.dumps(data, indent=1).encode())
    atomic_write(out / "README.md", render(data, out).encode())
