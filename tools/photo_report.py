"""Held-out photos, side by side: `photo64` and `photo32` against JPEG and WebP at equal bytes
(issue 25, item 4). Two sections, one rows.json, one README.md with tables and two plots.

    OMP_NUM_THREADS=1 python tools/photo_report.py --out reports/photo64     # measure + render
    python tools/photo_report.py --render --out reports/photo64              # tables from rows.json

1. 64 px crops (`--crops N`, default 256): `PhotoCropDataset("test", 64, zoom=(1, 32))`, seed 0,
   the validation set's multi-scale distribution (configs/data/photos64.yaml) on the 4 test
   photos; `--zoom 1,1` gives tiles of the full-size photos instead. Every token point is a real
   file: each crop encoded once (K tokens per tile), written as a .vtok file with the same k in
   every tile (photo32: 2x2 tiles of 32 px), read and decoded by `Codec`. Rates: the file's
   bytes (bit-packed, or `--coding static`: range coded with the model's static table; header
   included, 28-29 B), which every table and BD-rate uses, and the tokens alone, bit-packed
   without the header (k * tiles * bits per token / 8). JPEG / WebP: whole files
   at `metrics.rate.DEFAULT_QUALITIES`. Metrics: `evaluation.scoring.Scorer` (PSNR, SSIM,
   MS-SSIM, the perceptual distance "auto", rFID / KID from TF-Inception features).
2. Whole photos at a budget: the test photos resized to `--max-side` (512), bpp 0.02 .. 1: each
   model's `--target-bytes` file (`codec.budget.fit` via `budget_report.Photo`, `--coding`),
   and the best JPEG / WebP file within the budget (`budget_report.baseline`). PSNR / SSIM over
   the photo; rFID / KID / perceptual over 64 px patches of every decoded photo against the same
   patches of the originals, pooled over the photos: a grid from the top-left corner plus one
   offset by 32 px in both axes (as HiFiC's patch FID adds a half-patch shift; the offset grid
   crosses 64 px tile borders, so seams count), partial patches dropped. A contestant gets
   patch metrics at a budget only where it reaches that budget on every photo. BD-rate per
   photo against the codec's full quality sweep on that photo.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import budget_report  # noqa: E402
import photo_report_tables as tables  # noqa: E402

from tokenizers_vis.cli.common import run  # noqa: E402
from tokenizers_vis.errors import VistokError  # noqa: E402

PROG = "python tools/photo_report.py"
PATCH, SHIFT = 64, 32


class ReportError(VistokError):
    """A mistake in the report's options."""


def scorer_for(images: torch.Tensor, perceptual: str, batch_size: int, seed: int):
    """A `Scorer` of uint8 images (n 3 h w) with rFID / KID and the perceptual distance."""
    from tokenizers_vis.evaluation import inputs, scoring

    extractor, info = inputs.load_extractor(True)
    distance = inputs.load_perceptual(perceptual, extractor)
    dev = torch.device("cpu")
    ref = scoring.reference(images, extractor, None, "test", batch_size, None, dev)
    scorer = scoring.Scorer(images, batch_size, dev, extractor, ref, distance, seed)
    return scorer, getattr(distance, "metric_name", None), info["id"]


def normalise(scores: dict, perceptual: str | None) -> dict:
    """Scorer output with its perceptual key renamed "perceptual" (the name goes in info)."""
    out = dict(scores)
    if perceptual in out:
        out["perceptual"] = out.pop(perceptual)
    return out


def crop_images(n: int, zoom: tuple[float, float], seed: int) -> torch.Tensor:
    """(n 3 64 64) uint8: fixed crops of the test photos."""
    from tokenizers_vis.data.photos import PhotoCropDataset
    from tokenizers_vis.data.transforms import to_uint8

    ds = PhotoCropDataset("test", 64, zoom=zoom, crops_per_epoch=n, seed=seed, deterministic=True)
    return torch.stack([to_uint8(ds[i][0]) for i in range(n)])


class TokenFiles:
    """Every crop through one model's codec: all K tokens of every tile, encoded once; the
    bit-packed file of any k (the same k in every tile) and its decoded pixels."""

    def __init__(self, codec, images: torch.Tensor) -> None:
        from tokenizers_vis.codec.layout import coded_size, to_tiles
        from tokenizers_vis.data.transforms import to_tensor

        self.codec, tok = codec, codec.tokenizer
        self.size = (images.shape[-1], images.shape[-2])
        canvas = coded_size(self.size, tok.image_size)
        tiles = np.concatenate(
            [
                to_tiles(Image.fromarray(x.permute(1, 2, 0).numpy()), canvas, tok.image_size)
                for x in images
            ]
        )  # (n*T S S 3)
        self.tiles_per_image = len(tiles) // len(images)
        ids = []
        for i in range(0, len(tiles), codec.batch_size):
            x = torch.stack([to_tensor(t) for t in tiles[i : i + codec.batch_size]])  # (b 3 S S)
            with torch.inference_mode():
                ids.append(tok.encode(x).ids.numpy())  # (b K g)
        self.ids = np.concatenate(ids)  # (n*T K g)

    def file(self, index: int, k: int) -> bytes:
        from tokenizers_vis.codec import entropy_coding
        from tokenizers_vis.codec import format as fmt

        tok, t = self.codec.tokenizer, self.tiles_per_image
        shape = (tok.image_size, tok.max_tokens, tuple(tok.vocab_sizes))
        header = fmt.Header(self.codec.identity, self.size, *shape, (k,) * t)
        ids = self.ids[index * t : (index + 1) * t]  # (T K g)
        if self.codec.entropy is None:
            return fmt.dumps(header, ids)
        return entropy_coding.dumps(header, ids, self.codec.entropy)

    def reconstruct(self, k: int, index: slice, x: torch.Tensor):
        """Scorer's callback: the decoded files of crops `index` at k, and their bytes."""
        from tokenizers_vis.data.transforms import to_tensor

        files = [self.file(i, k) for i in range(index.start, index.stop)]
        pairs = ((i, self.codec.read(data)) for i, data in enumerate(files))
        decoded = [to_tensor(im) for _, im in self.codec.decode_stream(pairs)]  # (3 h w) each
        return torch.stack(decoded), torch.tensor([len(f) for f in files])


def measure_crops(args: argparse.Namespace, info: dict) -> list[dict]:
    """Rows of the crops section: every model's k grid and both codecs' quality sweeps."""
    from tokenizers_vis.codec import bitpack, budget
    from tokenizers_vis.evaluation import scoring
    from tokenizers_vis.evaluation.cache import CodecCache
    from tokenizers_vis.metrics.rate import DEFAULT_QUALITIES

    images = crop_images(args.crops, args.zoom, args.seed)
    scorer, perceptual, extractor = scorer_for(images, args.perceptual, args.batch_size, args.seed)
    info.update(perceptual=perceptual, extractor=extractor)
    pixels, rows = images.shape[-1] * images.shape[-2], []
    for name, codec in args.codecs.items():
        files = TokenFiles(codec, images)
        bits = sum(bitpack.bit_widths(codec.tokenizer.vocab_sizes))
        grid = budget.k_grid(codec.tokenizer.max_tokens).tolist()
        for k in [k for k in args.ks if k <= grid[-1]] if args.ks else grid:
            t0 = time.perf_counter()
            got = scorer.score(functools.partial(files.reconstruct, k), f"{name} k={k}")
            token_bytes = k * files.tiles_per_image * bits / 8
            row = {"section": "crops", "contestant": name, "k": k, "token_bytes": token_bytes}
            row["seconds"] = time.perf_counter() - t0  # decode and score, all crops
            rows.append(row | normalise(got, perceptual))
            print(f"crops {name} k={k} {got['psnr']:.2f} dB", flush=True)
    cache = CodecCache(None, images, {})
    plan = {c: args.qualities.get(c) or list(DEFAULT_QUALITIES[c]) for c in tables.CODECS}
    for codec, points in scoring.sweep_codecs(plan, scorer, cache).items():
        rows += [
            {"section": "crops", "contestant": codec} | normalise(p, perceptual) for p in points
        ]
    for r in rows:
        r["bpp"] = 8 * r["bytes_per_image"] / pixels
    return rows


def patches(image: np.ndarray) -> np.ndarray:
    """(p 3 64 64) uint8 patches of an (h w 3) photo: the aligned grid, then the shifted one."""
    h, w = image.shape[:2]
    out = [
        image[y : y + PATCH, x : x + PATCH]
        for offset in (0, SHIFT)
        for y in range(offset, h - PATCH + 1, PATCH)
        for x in range(offset, w - PATCH + 1, PATCH)
    ]
    return np.stack(out).transpose(0, 3, 1, 2)


def load_photos(names: list[str], max_side: int) -> dict[str, Image.Image]:
    from tokenizers_vis.data.eet import largest_jpeg
    from tokenizers_vis.data.photos import photo_sources
    from tokenizers_vis.data.transforms import load_rgb

    sources, out = photo_sources(), {}
    for name in names:
        path = sources[name]  # an Enlightenment wallpaper (.edj) holds JPEGs at several sizes
        image = load_rgb(largest_jpeg(path) if path.suffix == ".edj" else path)
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out[name] = image
    return out


def model_files(codec, photos: dict, bpps: list[float]) -> dict:
    """{(photo, bpp): (file bytes, decoded (h w 3) uint8, mean k) or None when out of reach}."""
    from tokenizers_vis.codec import bitpack, budget

    grid = budget.k_grid(codec.tokenizer.max_tokens)
    bits = sum(bitpack.bit_widths(codec.tokenizer.vocab_sizes))
    out = {}
    for name, image in photos.items():
        photo = budget_report.Photo(codec, image, grid)
        coded = codec.entropy is not None
        write = functools.partial(photo.write, entropy=coded)
        for bpp in bpps:
            limit = int(bpp * image.size[0] * image.size[1] / 8)
            try:
                fitted = budget.fit(write, photo.points(coded), grid, bits, limit)
            except budget.BudgetError:
                out[name, bpp] = None
                continue
            decoded = np.asarray(codec.decode_bytes(fitted.data))
            out[name, bpp] = (fitted.data, decoded, float(fitted.lengths.mean()))
    return out


def codec_files(kind: str, photos: dict, bpps: list[float]) -> dict:
    """The same for JPEG / WebP: the highest quality within each budget."""
    out = {}
    for name, image in photos.items():
        for bpp in bpps:
            found = budget_report.baseline(
                image, kind, int(bpp * image.size[0] * image.size[1] / 8)
            )
            if found is not None:
                decoded = np.asarray(Image.open(io.BytesIO(found[0])).convert("RGB"))
                found = (found[0], decoded, found[1])
            out[name, bpp] = found
    return out


def sweep_rows(photos: dict) -> list[dict]:
    """JPEG / WebP per photo at every default quality: the anchor curves of the BD-rates."""
    from tokenizers_vis.metrics.rate import DEFAULT_QUALITIES, _encode

    rows = []
    for (name, image), kind in ((p, c) for p in photos.items() for c in tables.CODECS):
        source = np.asarray(image)
        for q in DEFAULT_QUALITIES[kind]:
            data = _encode(image, kind, q)
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            rows.append(
                {
                    "section": "sweep",
                    "contestant": kind,
                    "photo": name,
                    "quality": q,
                    "bytes": len(data),
                    "bpp": 8 * len(data) / (image.size[0] * image.size[1]),
                    "psnr": budget_report.psnr(decoded, source),
                }
            )
    return rows


def stored(images: torch.Tensor, index: slice, x: torch.Tensor) -> tuple[torch.Tensor, None]:
    """Scorer's callback over decoded images kept in memory, uint8 (n 3 h w)."""
    return images[index].float() / 127.5 - 1.0, None  # to_tensor's scale, batched


def measure_whole(args: argparse.Namespace, info: dict) -> list[dict]:
    """Rows of the whole-photo section: per photo and budget, and pooled patch metrics."""
    photos = load_photos(args.photos, args.max_side)
    originals = {n: np.asarray(im) for n, im in photos.items()}
    reference = torch.from_numpy(np.concatenate([patches(originals[n]) for n in photos]))
    scorer, perceptual, _ = scorer_for(reference, args.perceptual, args.batch_size, args.seed)
    info.update(patches=reference.shape[0], perceptual=perceptual)
    rows = sweep_rows(photos)
    found = {name: model_files(codec, photos, args.bpp) for name, codec in args.codecs.items()}
    found |= {kind: codec_files(kind, photos, args.bpp) for kind in tables.CODECS}
    for name, files in found.items():
        for bpp in args.bpp:
            for photo, image in photos.items():
                row = {"section": "whole", "contestant": name, "photo": photo, "bpp_budget": bpp}
                if files[photo, bpp] is not None:
                    data, decoded, extra = files[photo, bpp]
                    w, h = image.size
                    row |= {
                        "bytes": len(data),
                        "bpp": 8 * len(data) / (w * h),
                        "psnr": budget_report.psnr(decoded, originals[photo]),
                        "ssim": budget_report.ssim(decoded, originals[photo]),
                        "mean_k" if name not in tables.CODECS else "quality": extra,
                    }
                rows.append(row)
            if all(files[p, bpp] is not None for p in photos):
                recon = torch.from_numpy(
                    np.concatenate([patches(files[p, bpp][1]) for p in photos])
                )
                got = scorer.score(functools.partial(stored, recon), f"{name} {bpp} bpp")
                rows.append(
                    {"section": "patches", "contestant": name, "bpp_budget": bpp}
                    | normalise(got, perceptual)
                )
            print(f"whole {name} bpp={bpp}", flush=True)
    return rows


def parse(argv: list[str] | None) -> argparse.Namespace:
    from tokenizers_vis.cli.common import ArgumentParser
    from tokenizers_vis.data.photos import PHOTO_SPLITS

    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--model64", default="photo64", help="photo64's name or directory")
    p.add_argument("--model32", default="photo32", help="photo32's ('none' to leave it out)")
    p.add_argument("--sections", default="crops,whole", help="crops, whole or both")
    p.add_argument("--crops", type=int, default=256, help="number of 64 px test crops")
    p.add_argument("--zoom", default="1,32", help="crop side range / 64 (val's: 1,32)")
    p.add_argument("--bpp", default=",".join(map(str, budget_report.BPPS)))
    p.add_argument("--photos", default=",".join(PHOTO_SPLITS["test"]))
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--perceptual", default="auto", choices=("auto", "inception", "lpips_vgg"))
    p.add_argument(
        "--coding",
        default="bit-packed",
        choices=("bit-packed", "static"),
        help="token files: bit-packed, or range coded with each model's static table",
    )
    p.add_argument("--ks", default="", help="crops: token counts (default each model's k grid)")
    p.add_argument("--jpeg-qualities", default="", help="crops (default: the evaluation's)")
    p.add_argument("--webp-qualities", default="", help="crops (default: the evaluation's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="reports/photo64")
    p.add_argument("--render", action="store_true", help="only rebuild README.md from rows.json")
    args = p.parse_args(argv)
    try:
        args.zoom = tuple(float(z) for z in args.zoom.split(","))
        args.bpp = [float(b) for b in args.bpp.split(",")]
        args.ks = [int(k) for k in args.ks.split(",") if k]
        args.qualities = {
            c: [int(q) for q in getattr(args, f"{c}_qualities").split(",") if q]
            for c in ("jpeg", "webp")
        }
    except ValueError:
        raise ReportError(
            "--zoom, --bpp, --ks and --*-qualities take comma-separated numbers"
        ) from None
    if any(k < 1 for k in args.ks) or any(q < 0 for v in args.qualities.values() for q in v):
        raise ReportError("--ks must be >= 1 and qualities >= 0")
    if len(args.zoom) != 2 or not 0 < args.zoom[0] <= args.zoom[1] or min(args.bpp) <= 0:
        raise ReportError("--zoom takes LO,HI with 0 < LO <= HI, and every --bpp must be > 0")
    if args.crops < 2 and "crops" in args.sections:
        raise ReportError("--crops must be at least 2 (FID needs two images)")
    args.sections = [s.strip() for s in args.sections.split(",")]
    if not set(args.sections) <= {"crops", "whole"}:
        raise ReportError(f"--sections takes crops and / or whole, got {args.sections}")
    if args.max_side < PATCH or args.threads < 1 or args.batch_size < 1:
        raise ReportError(f"--max-side must be >= {PATCH}, --threads and --batch-size >= 1")
    args.photos = args.photos.split(",")
    return args


def load_inputs(args: argparse.Namespace) -> None:
    """Check the photos and load every model before anything long runs (a missing model, or
    --coding static without a model's table, fails here in one line)."""
    from tokenizers_vis.codec.api import Codec
    from tokenizers_vis.data.photos import photo_sources

    known = photo_sources()
    missing = [p for p in args.photos if p not in known]
    if missing and "whole" in args.sections:
        raise ReportError(f"photos not installed: {missing}; known: {', '.join(known)}")
    entropy = "static" if args.coding == "static" else None
    models = {"photo64": args.model64, "photo32": args.model32}
    args.models = {n: m for n, m in models.items() if m != "none"}
    args.codecs = {
        name: Codec.from_pretrained(path, entropy, device="cpu", batch_size=args.batch_size)
        for name, path in args.models.items()
    }


def body(argv: list[str] | None) -> int:
    args = parse(argv)
    out = Path(args.out)
    if args.render:
        found = out / "rows.json"
        if not found.is_file():
            raise ReportError(f"{found}: no rows to render (run without --render first)")
        tables.write(json.loads(found.read_text()), out)
        return 0
    torch.set_num_threads(args.threads)
    load_inputs(args)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    info = {
        "command": " ".join([PROG, *(argv if argv is not None else sys.argv[1:])]),
        "env": " ".join(f"{v}={os.environ[v]}" for v in ("OMP_NUM_THREADS",) if v in os.environ),
        "models": args.models,
        "crops": args.crops,
        "zoom": args.zoom,
        "seed": args.seed,
        "max_side": args.max_side,
        "patch_grid": f"{PATCH} px, offsets 0 and {SHIFT}",
        "rate": f"{args.coding} .vtok file bytes, header included",
        "cpu": budget_report.machine()["cpu"],
        "uptime_start": uptime,
    }
    rows = []
    if "crops" in args.sections:
        rows += measure_crops(args, info)
    if "whole" in args.sections:
        rows += measure_whole(args, info)
    info["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    info["wall_s"] = round(time.perf_counter() - start, 1)
    tables.write({"info": info, "rows": rows}, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(lambda: body(argv), PROG, writes=True)


if __name__ == "__main__":
    raise SystemExit(main())
