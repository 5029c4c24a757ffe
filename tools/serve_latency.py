"""Latency of `vistok serve`: what a slider move costs, per served tokenizer, over real HTTP.

    .venv/bin/python tools/serve_latency.py [--threads 1] [--rounds 2] [--out reports]

Starts the page on a free local port (a thread, as the tests do), loads a 32x32 held-out emoji
and a held-out photo (640 px, tile layout at the auto scale), and for every served tokenizer
times `GET /api/view` at every k = 1..K in a shuffled order, each a k the page has not decoded
yet (what dragging the slider costs: decode, scores, JPEG / WebP at the closest bytes, PNGs,
JSON), then the same k again (cached). Sampling decoders (rectified flow) are timed as jobs at
their default steps, and one GPT grid row. Writes reports/serve-latency-<cpu>.md; not a test:
the numbers depend on the machine and on what else runs on it (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import time
import urllib.request
from pathlib import Path

import torch

from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.precision import cpu_model_name
from tokenizers_vis.serve import Page, Server


def call(url: str, data: bytes | None = None, method: str | None = None) -> dict:
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def finish(url: str, answer: dict) -> dict:
    """Poll a job to its end (the page does the same)."""
    while answer.get("state") in ("queued", "running"):
        time.sleep(0.02)
        answer = call(f"{url}/api/jobs/{answer['job']}")
    return answer


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return 1000 * (time.perf_counter() - start), out


def slider(url: str, image: str, model, rng: random.Random, count: int) -> dict[str, float]:
    """ms of the first view (encode + JPEG / WebP), then of `count` other k uncached, and
    cached."""
    base = f"{url}/api/view?image={image}&model={model['key']}"
    first, v = timed(lambda: finish(url, call(f"{base}&k=1")))
    ks = list(range(2, model["max_tokens"] + 1))
    rng.shuffle(ks)
    ks = ks[:count]
    cold = [timed(lambda k=k: finish(url, call(f"{base}&k={k}")))[0] for k in ks]
    warm = [timed(lambda k=k: finish(url, call(f"{base}&k={k}")))[0] for k in ks[:16]]
    tiles = v.get("tiles") or v.get("result", {}).get("tiles")
    return {
        "tiles": tiles,
        "n": len(ks),
        "first": first,
        "p50": statistics.median(cold),
        "p90": statistics.quantiles(cold, n=10, method="inclusive")[-1],
        "max": max(cold),
        "cached": statistics.median(warm),
    }


def sampling(url: str, image: str, owner: str, decoder: dict, rounds: int) -> list[float]:
    base = f"{url}/api/view?image={image}&model={owner}&decoder={decoder['key']}&k=16"
    base += f"&steps={decoder['default_steps']}"
    return [timed(lambda s=s: finish(url, call(f"{base}&seed={s}")))[0] for s in range(rounds)]


def gpt_row(url: str) -> float | None:
    q = "class=smileys&k=64&n=8&guidance=3&seed=0"
    ms, done = timed(lambda: finish(url, call(f"{url}/api/generate?{q}", b"", "POST")))
    return ms if done.get("state") == "done" else None


def load_average() -> str:
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def report(rows: list[tuple], rf: list[tuple], gpt: float | None, args, load: str) -> str:
    cpu = cpu_model_name()
    lines = [
        f"# `vistok serve` latency on {cpu}",
        "",
        f"`python tools/serve_latency.py --threads {args.threads}` ({time.strftime('%Y-%m-%d')}"
        f", {os.cpu_count()} cores, torch {torch.__version__}, torch threads: {args.threads}; "
        f"load average before / after: {load}). The machine was shared with other work while "
        "this ran, so the figures are upper bounds of an idle machine's.",
        "",
        "One slider move = `GET /api/view` over local HTTP: decode of the first k tokens of every "
        "tile, PSNR / SSIM, the JPEG and WebP files closest in bytes, PNGs and JSON. *first*: the "
        "first view of an image (encode once + the first JPEG / WebP files); *p50 / p90 / max*: "
        "other k once each (every k on the emoji, `--photo-ks` of them on the photo, 8 for a "
        "sampling decoder, whose slider runs a job), shuffled, none cached; *cached*: the same k "
        "again.",
        "",
        "| tokenizer | image | tiles | k timed | first (ms) | p50 (ms) | p90 (ms) | max (ms) "
        "| cached (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, image, t in rows:
        lines.append(
            f"| `{model}` | {image} | {t['tiles']} | {t['n']} | {t['first']:.0f} | "
            f"{t['p50']:.0f} | {t['p90']:.0f} | {t['max']:.0f} | {t['cached']:.0f} |"
        )
    lines += ["", "Sampling decoders (a job with progress and cancel; k = 16, default steps):", ""]
    lines += ["| decoder | of | image | steps | ms per decode |", "|---|---|---|---:|---:|"]
    for decoder, owner, image, steps, ms in rf:
        each = ", ".join(f"{m:.0f}" for m in ms)
        lines.append(f"| `{decoder}` | `{owner}` | {image} | {steps} | {each} |")
    if gpt is not None:
        lines += ["", f"GPT tab: one row of 8 `gpt_emoji` samples (k = 64, guidance 3): "
                  f"{gpt:.0f} ms."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (as vistok serve)")
    parser.add_argument("--rounds", type=int, default=2, help="sampling decodes per decoder")
    parser.add_argument("--photo-ks", type=int, default=16, help="k timed on the photo")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = load_average()
    page = Page()
    rng = random.Random(0)
    rows, rf = [], []
    with Server(page, port=0) as server:
        url = server.url
        examples = page.examples()
        emoji = next(k for k in examples if k.startswith("emoji"))
        photo = next((k for k in examples if k.startswith("photo")), None)
        images = {"32x32 emoji": emoji}
        if photo is not None:
            label = f"{examples[photo][1].width}x{examples[photo][1].height} photo"
            images[label] = photo
        keys = {name: call(f"{url}/api/example?id={i}", b"", "POST")["image"]
                for name, i in images.items()}  # fmt: skip
        info = call(f"{url}/api/info")
        for model in info["models"]:
            for name, key in keys.items():
                if model["generative"] and name != "32x32 emoji":
                    continue  # 25 sampling steps per tile: minutes for a photo's tiles here
                count = args.photo_ks if "photo" in name else model["max_tokens"]
                count = min(count, 8) if model["generative"] else count
                rows.append((model["key"], name, slider(url, key, model, rng, count)))
                print(rows[-1], flush=True)
            for d in model["decoders"]:
                if d["generative"]:
                    ms = sampling(url, keys["32x32 emoji"], model["key"], d, args.rounds)
                    rf.append((d["key"], model["key"], "32x32 emoji", d["default_steps"], ms))
                    print(rf[-1], flush=True)
        gpt = gpt_row(url) if info["generation"]["available"] else None
    page.close()
    load += " / " + load_average()
    slug = re.sub(r"[^a-z0-9]+", "-", cpu_model_name().lower()).strip("-")
    out = args.out / f"serve-latency-{slug}.md"
    atomic_write(out, report(rows, rf, gpt, args, load).encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
