"""Whole held-out photos at a byte budget: the allocation against one k for every tile and
JPEG / WebP at the same bytes, and how much the tile seams show.

    OMP_NUM_THREADS=1 python tools/budget_report.py --out reports/budget    # photo32, ~15 CPU-min

For each photo of the photo data's test split (`tokenizers_vis.data.photos`), resized so that
its longest side is at most `--max-side` (CPU time: 4 photos of 2-8 Mpx would be 12,000 tiles
and the grid's 12 decoder passes each), and each budget `floor(bpp * w * h / 8)` bytes:
- allocation: `codec.budget.fit`, the file the encoder writes for `--target-bytes`;
- one k: the largest k whose file (every tile at k) fits;
- JPEG (optimised Huffman tables) and WebP (method 6): the highest quality whose file fits;
every file decoded and measured against the photo (PSNR over all pixels, SSIM). Both payload
codings: bit-packed and the model's static table.

Seams (every token row is also measured after `codec.deblock`, `vistok decode --deblock`): mean
|difference| of neighbouring pixels across tile borders (the column pairs 31|32,
63|64, ... and the same rows) over that inside tiles, divided by the same ratio on the photo
itself: 1.0 = borders look like any other place, above 1 = a seam.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from tokenizers_vis.codec import bitpack, budget, entropy_coding
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.api import Codec
from tokenizers_vis.codec.deblock import deblock
from tokenizers_vis.codec.layout import tile_extents, to_tiles
from tokenizers_vis.data.photos import PHOTO_SPLITS, photo_sources
from tokenizers_vis.data.transforms import load_rgb, to_tensor, to_uint8

BPPS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def seam_ratio(image: np.ndarray, tile: int) -> float:
    """Mean |neighbour difference| across tile borders over that inside tiles (both axes)."""
    x = image.astype(np.float64)
    ratios = []
    for axis in (0, 1):
        diff = np.abs(np.diff(x, axis=axis)).mean(axis=(1 - axis, 2))  # (n-1): pair i|i+1
        border = (np.arange(len(diff)) % tile) == tile - 1
        ratios.append(diff[border].mean() / diff[~border].mean())
    return float(np.mean(ratios))


def baseline(image: Image.Image, kind: str, limit: int) -> tuple[bytes, int] | None:
    """The highest-quality JPEG / WebP file of at most `limit` bytes (bisection on quality)."""
    lo, hi = (1, 95) if kind == "jpeg" else (0, 100)

    def save(q: int) -> bytes:
        buf = io.BytesIO()
        if kind == "jpeg":
            image.save(buf, format="JPEG", quality=q, optimize=True)
        else:
            image.save(buf, format="WEBP", quality=q, method=6)
        return buf.getvalue()

    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = save(mid)
        if len(data) <= limit:
            best, lo = (data, mid), mid + 1
        else:
            hi = mid - 1
    return best


class Photo:
    """One photo through the codec: every tile's K tokens and its points on the k grid."""

    def __init__(self, codec: Codec, image: Image.Image, grid: np.ndarray) -> None:
        self.codec, self.image, self.grid = codec, image, grid
        s = codec.tokenizer.image_size
        tiles = to_tiles(image, image.size, s)  # (T S S 3)
        extents = torch.from_numpy(tile_extents(image.size, s))  # (T 2)
        ids, sse, bits = [], [], []
        for i in range(0, len(tiles), codec.batch_size):
            x = torch.stack([to_tensor(t) for t in tiles[i : i + codec.batch_size]])  # (b 3 S S)
            with torch.inference_mode():
                part = codec.tokenizer.encode(x).ids  # (b K g)
                points = budget.tile_points(
                    codec._decode_u8,
                    part,
                    to_uint8(x),
                    extents[i : i + len(x)],
                    grid,
                    codec.entropy,
                )
            ids.append(part.numpy())
            sse.append(points.sse)
            bits.append(points.bits)
        self.ids = np.concatenate(ids)  # (T K g)
        self.sse = np.concatenate(sse)
        # Bits only under an entropy model (photo_report.py also measures bit-packed codecs).
        self.bits = None if codec.entropy is None else np.concatenate(bits)

    def write(self, lengths: np.ndarray, entropy: bool) -> bytes:
        tok = self.codec.tokenizer
        header = fmt.Header(
            self.codec.identity,
            self.image.size,
            tok.image_size,
            tok.max_tokens,
            tuple(tok.vocab_sizes),
            tuple(int(k) for k in lengths),
        )
        if not entropy:
            return fmt.dumps(header, self.ids)
        return entropy_coding.dumps(header, self.ids, self.codec.entropy)

    def points(self, entropy: bool) -> budget.TilePoints:
        return budget.TilePoints(self.sse, self.bits if entropy else None)


def measure(codec: Codec, name: str, photo: Photo, bpps: tuple[float, ...]) -> list[dict]:
    """Rows of bytes / PSNR / SSIM per (coding, bpp, method)."""
    source = np.asarray(photo.image)
    w, h = photo.image.size
    bpt = sum(bitpack.bit_widths(codec.tokenizer.vocab_sizes))
    rows = []

    def row(coding, bpp, method, data, decoded, **extra):
        if method in ("allocation", "one k"):
            blended = np.asarray(deblock(Image.fromarray(decoded), fmt.read_header(data)[0]))
            extra |= dict(psnr_deblock=psnr(blended, source), ssim_deblock=ssim(blended, source))
            extra |= dict(seams_deblock=seam_ratio(blended, 32) / seam_ratio(source, 32))
        rows.append(
            dict(photo=name, size=f"{w}x{h}", coding=coding, bpp_budget=bpp, method=method)
            | dict(bytes=len(data), bpp=8 * len(data) / (w * h), psnr=psnr(decoded, source))
            | dict(
                ssim=ssim(decoded, source), seams=seam_ratio(decoded, 32) / seam_ratio(source, 32)
            )
            | extra
        )

    for entropy in (False, True):
        coding = "static" if entropy else "bit-packed"
        write = functools.partial(photo.write, entropy=entropy)
        for bpp in bpps:
            limit = int(bpp * w * h / 8)
            try:
                fitted = budget.fit(write, photo.points(entropy), photo.grid, bpt, limit)
            except budget.BudgetError:
                rows.append(dict(photo=name, coding=coding, bpp_budget=bpp, method="allocation"))
                continue
            decoded = np.asarray(codec.decode_bytes(fitted.data))
            row(
                coding, bpp, "allocation", fitted.data, decoded, mean_k=float(fitted.lengths.mean())
            )
            uniform = None
            for k in range(codec.tokenizer.max_tokens, 0, -1):
                data = write(np.full(len(photo.ids), k))
                if len(data) <= limit:
                    uniform = (k, data)
                    break
            if uniform is not None:
                decoded = np.asarray(codec.decode_bytes(uniform[1]))
                row(coding, bpp, "one k", uniform[1], decoded, mean_k=float(uniform[0]))
    for bpp in bpps:
        limit = int(bpp * w * h / 8)
        for kind in ("jpeg", "webp"):
            found = baseline(photo.image, kind, limit)
            if found is None:
                rows.append(dict(photo=name, coding="-", bpp_budget=bpp, method=kind))
                continue
            decoded = np.asarray(Image.open(io.BytesIO(found[0])).convert("RGB"))
            row("-", bpp, kind, found[0], decoded, quality=found[1])
    return rows


def _cell(r: dict | None, key: str = "psnr") -> str:
    return "-" if r is None or "bytes" not in r else f"{r[key]:.2f}"


PER_PHOTO = (
    "| photo | bpp budget | allocation (bytes) | one k (k) | JPEG | WebP "
    "| alloc. SSIM | WebP SSIM |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
)
MEANS = (
    "| coding | bpp budget | photos | allocation | one k | JPEG | WebP | alloc. + deblock "
    "| seams: alloc. | alloc. + deblock | one k | JPEG |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
)


TOKENS = (
    "| coding | bpp budget | photos | alloc. bpp | alloc. PSNR | one k bpp | one k PSNR | gain "
    "| alloc. + deblock | one k + deblock | seams alloc. | + deblock |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
)


def render(rows: list[dict]) -> str:
    """Markdown tables of rows.json: PSNR per coding, photo and budget; the means over the
    photos every method reaches; the seam ratios."""
    find = {(r["photo"], r["coding"], r["bpp_budget"], r["method"]): r for r in rows}
    photos = list(dict.fromkeys(r["photo"] for r in rows))
    bpps = sorted({r["bpp_budget"] for r in rows})
    out = []
    for coding in ("bit-packed", "static"):
        out += [f"PSNR dB, {coding} token files:", "", *PER_PHOTO]
        for photo, bpp in itertools.product(photos, bpps):
            a, u = (
                find.get((photo, coding, bpp, "allocation")),
                find.get((photo, coding, bpp, "one k")),
            )
            j, w = find.get((photo, "-", bpp, "jpeg")), find.get((photo, "-", bpp, "webp"))
            alloc = (
                "unreachable"
                if a is None or "bytes" not in a
                else f"{a['psnr']:.2f} ({a['bytes']})"
            )
            one = "-" if u is None else f"{u['psnr']:.2f} ({u['mean_k']:.0f})"
            out.append(
                f"| {photo} | {bpp} | {alloc} | {one} | {_cell(j)} | {_cell(w)} "
                f"| {_cell(a, 'ssim')} | {_cell(w, 'ssim')} |"
            )
        out.append("")
    out += ["Means over the photos that all four methods reach at that budget:", "", *MEANS]
    for coding, bpp in itertools.product(("bit-packed", "static"), bpps):
        methods = ((coding, "allocation"), (coding, "one k"), ("-", "jpeg"), ("-", "webp"))
        got = [
            p for p in photos if all("bytes" in find.get((p, c, bpp, m), {}) for c, m in methods)
        ]
        if not got:
            continue

        def mean(c: str, m: str, key: str, got=got, bpp=bpp) -> str:
            return f"{np.mean([find[(p, c, bpp, m)][key] for p in got]):.2f}"

        cells = [
            mean(coding, "allocation", "psnr"),
            mean(coding, "one k", "psnr"),
            mean("-", "jpeg", "psnr"),
            mean("-", "webp", "psnr"),
            mean(coding, "allocation", "psnr_deblock"),
            mean(coding, "allocation", "seams"),
            mean(coding, "allocation", "seams_deblock"),
            mean(coding, "one k", "seams"),
            mean("-", "jpeg", "seams"),
        ]
        out.append(f"| {coding} | {bpp} | {len(got)} | " + " | ".join(cells) + " |")
    out += ["", "Tokens only, means over every photo (all reach every budget):", "", *TOKENS]
    for coding, bpp in itertools.product(("bit-packed", "static"), bpps):
        pairs = [
            (find[(p, coding, bpp, "allocation")], find[(p, coding, bpp, "one k")])
            for p in photos
            if "bytes" in find.get((p, coding, bpp, "allocation"), {})
            and (p, coding, bpp, "one k") in find
        ]
        if not pairs:
            continue
        a = {k: np.mean([x[k] for x, _ in pairs]) for k in ("psnr", "psnr_deblock", "bpp")}
        u = {k: np.mean([y[k] for _, y in pairs]) for k in ("psnr", "psnr_deblock", "bpp")}
        s = {k: np.mean([x[k] for x, _ in pairs]) for k in ("seams", "seams_deblock")}
        out.append(
            f"| {coding} | {bpp} | {len(pairs)} | {a['bpp']:.3f} | {a['psnr']:.2f} "
            f"| {u['bpp']:.3f} | {u['psnr']:.2f} | {a['psnr'] - u['psnr']:+.2f} "
            f"| {a['psnr_deblock']:.2f} | {u['psnr_deblock']:.2f} "
            f"| {s['seams']:.2f} | {s['seams_deblock']:.2f} |"
        )
    return "\n".join(out) + "\n"


def machine() -> dict:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?"
    )
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {"cpu": model, "platform": platform.platform(), "load_avg": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/budget_report.py")
    parser.add_argument("--model", default="photo32")
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--bpp", default=",".join(map(str, BPPS)))
    parser.add_argument("--photos", default=",".join(PHOTO_SPLITS["test"]))
    parser.add_argument("--out", default="reports/budget")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--render", action="store_true", help="only the tables of OUT/rows.json")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads((Path(args.out) / "rows.json").read_text())
        print(render(saved["rows"]), end="")
        return 0
    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.model, device="cpu", entropy="static")
    grid = budget.k_grid(codec.tokenizer.max_tokens)
    bpps = tuple(float(b) for b in args.bpp.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, start, sources = [], time.perf_counter(), photo_sources()
    info = {"model": args.model, "max_side": args.max_side, "grid": grid.tolist()} | machine()
    for name in args.photos.split(","):
        image = load_rgb(sources[name])
        if max(image.size) > args.max_side:
            image.thumbnail((args.max_side, args.max_side), Image.Resampling.LANCZOS)
        t0 = time.perf_counter()
        photo = Photo(codec, image, grid)
        measured = time.perf_counter() - t0
        rows += [r | {"measure_s": measured} for r in measure(codec, name, photo, bpps)]
        print(name, image.size, f"{measured:.0f} s to measure", flush=True)
        (out / "rows.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    info |= {"seconds": time.perf_counter() - start, "load_avg_end": machine()["load_avg"]}
    (out / "rows.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
