"""Measure the codec: bytes and speed on emoji, and what each layout costs on real photos.

    python -m tokenizers_vis.codec.measure            # emoji32, one CPU thread, ~1 CPU-minute

Prints markdown tables (the numbers in docs/token-format.md):
1. emoji32 on the held-out emoji: bytes per image, encode / decode images per second through
   `Codec` (bytes in memory, so the numbers are the model's plus the format's, no disk).
2. The photos data's scikit-image and MATE sources (17 photographs, 451x300 to 2560x1920):
   bytes, bits per pixel and PSNR at the original size for each layout, next to the PSNR of
   the layout's resampling alone (down to the canvas and back, no tokens): the ceiling the
   layout sets.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from tokenizers_vis.codec.api import Codec, EncodeOptions
from tokenizers_vis.codec.format import read_header
from tokenizers_vis.data.photos import photo_sources
from tokenizers_vis.data.transforms import load_rgb
from tokenizers_vis.metrics.reconstruction import psnr_u8


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (h, w, 3)."""
    a, b = (rearrange(torch.from_numpy(np.asarray(x)), "h w c -> 1 c h w") for x in (a, b))
    return float(psnr_u8(a, b)[0])


def emoji_speed(codec: Codec, count: int) -> list[str]:
    """Bytes per image and images/s for encode (k = K, and --target-psnr) and decode."""
    from tokenizers_vis.data.emoji import EmojiDataset

    pictures = [Image.fromarray(a) for a in EmojiDataset("test", 32).images[:count]]
    rows = ["| emoji32, 32x32 emoji | bytes / image | images / s |", "|---|---:|---:|"]
    runs = {
        "encode, k = 64": EncodeOptions(),
        "encode, k = 16": EncodeOptions(num_tokens=16),
        "encode, --target-psnr 20": EncodeOptions(target_psnr=20.0),
    }
    for label, options in runs.items():
        start = time.perf_counter()
        files = [e.data for e in codec.encode_images(pictures, options)]
        rate = len(files) / (time.perf_counter() - start)
        rows.append(f"| {label} | {np.mean([len(f) for f in files]):.1f} | {rate:.1f} |")
    start = time.perf_counter()
    images = list(codec.decode_stream((None, codec.read(f)) for f in files))
    rate = len(images) / (time.perf_counter() - start)
    rows.append(f"| decode (the --target-psnr files) | | {rate:.1f} |")
    return rows


LAYOUTS = {
    "resize (1 tile)": EncodeOptions(layout="resize"),
    "tile, scale 1/16": EncodeOptions(scale=1 / 16),
    "tile, scale 1/8": EncodeOptions(scale=1 / 8),
    "tile, scale 1": EncodeOptions(),
}


def layout_costs(codec: Codec, names: list[str], layouts: dict[str, EncodeOptions]) -> list[str]:
    """Per layout, over the photos `names`: mean tiles, bytes, bits / pixel, PSNR at the
    original size, the resampling's own PSNR (the ceiling) and the share of padded tile area."""
    s = codec.tokenizer.image_size
    sources = photo_sources()
    rows = [
        "| layout | photos | tiles / photo | bytes / photo | bits / pixel | PSNR dB "
        "| resampling alone dB | padding |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, options in layouts.items():
        stats = []
        for name in names:
            photo = load_rgb(sources[name])
            encoded = next(codec.encode_images([photo], options))
            header = read_header(encoded.data)[0]
            decoded = np.asarray(codec.decode_bytes(encoded.data))
            canvas = photo.resize(header.coded_size, Image.Resampling.LANCZOS)
            ceiling = np.asarray(canvas.resize(photo.size, Image.Resampling.LANCZOS))
            area = header.coded_size[0] * header.coded_size[1]
            stats.append(
                (
                    header.num_tiles,
                    len(encoded.data),
                    8 * len(encoded.data) / (photo.size[0] * photo.size[1]),
                    psnr(decoded, np.asarray(photo)),
                    psnr(ceiling, np.asarray(photo)) if canvas.size != photo.size else np.nan,
                    header.num_tiles * s * s / area - 1,
                )
            )
        m = np.mean(stats, axis=0)
        ceiling_text = "none" if np.isnan(m[4]) else f"{m[4]:.2f}"  # scale 1: no resampling
        rows.append(
            f"| {label} | {len(stats)} | {m[0]:.1f} | {m[1]:.0f} | {m[2]:.4f} | {m[3]:.2f} "
            f"| {ceiling_text} | {100 * m[5]:.1f} % |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenizers_vis.codec.measure")
    parser.add_argument("--model", default="emoji32")
    parser.add_argument("--emoji", type=int, default=64, help="emoji to time")
    parser.add_argument("--photo", default="skimage/chelsea", help="the photo for every layout")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.model, device="cpu")
    print("\n".join(emoji_speed(codec, args.emoji)), end="\n\n")
    every = {k: v for k, v in LAYOUTS.items() if v.scale != 1 or v.layout == "resize"}
    # The 17 photos of scikit-image and mate-backgrounds, as measured in docs/token-format.md
    # (the wallpaper sets added later would triple the run).
    names = [n for n in photo_sources() if n.startswith(("skimage/", "mate/"))]
    print(f"The {len(names)} scikit-image and MATE photos (scale 1 would take CPU-minutes):")
    print()
    print("\n".join(layout_costs(codec, names, every)), end="\n\n")
    print(f"{args.photo}, every layout:", end="\n\n")
    print("\n".join(layout_costs(codec, [args.photo], LAYOUTS)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
