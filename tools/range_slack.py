"""How close honest entropy-coded payloads come to the reader's past-the-end check.

    PYTHONPATH=. .venv/bin/python tools/range_slack.py [--images 64] [--out reports/hostile-inputs]

The range decoder refuses a payload once the decoded ids' lower-bound cost (`symbol_bits`)
exceeds 8 x payload bytes + `RANGE_LOOKAHEAD_BITS`, and the writer keeps zero bytes so that
honest payloads stay `_WRITER_MARGIN_BITS` inside. This codes real ids of the shipped models
(held-out emoji and photos, one image a file and whole photos in tiles, at several k) with the
static tables and the shipped GPT, and reports for each coder the largest (lower bound - 8 x
bytes) seen, and how many payloads the writer had to lengthen (any would change the bytes
that files had before the check).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import tokenizers_vis as tv
from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.codec import entropy_coding as ec
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec import static_table
from tokenizers_vis.codec.entropy import load_entropy_model
from tokenizers_vis.data import build_dataset


class Probe:
    """Records the lower bound of each payload coded and whether the writer padded it."""

    def __init__(self) -> None:
        self.bound, self.rows = 0.0, []
        self._bits, self._seal = ec.symbol_bits, ec._sealed_bytes

    def __enter__(self) -> Probe:
        def bits(p, symbols):
            out = self._bits(p, symbols)
            self.bound += out
            return out

        def seal(encoder, min_bits=0.0):
            plain = self._seal(encoder, 0.0)
            kept = self._seal(encoder, min_bits)
            self.rows.append((min_bits - 8 * len(plain), len(kept) != len(plain), len(plain)))
            self.bound = 0.0
            return kept

        ec.symbol_bits, ec._sealed_bytes = bits, seal
        return self

    def __exit__(self, *_: object) -> None:
        ec.symbol_bits, ec._sealed_bytes = self._bits, self._seal


@torch.no_grad()
def tile_ids(name: str, data: str, count: int, ks: list[int]) -> list[np.ndarray]:
    """Ids (T, k, g) of `count` held-out images, one tile each, and of groups of 64 tiles."""
    tok = tv.Tokenizer.from_pretrained(name).float().eval()
    ds = build_dataset(data, "test", tok.image_size)
    images = torch.stack([ds[i][0] for i in range(count)])
    out = []
    for k in ks:
        ids = tok.encode(images, num_tokens=k).ids.numpy()  # (b k g)
        out += [ids[i : i + 1] for i in range(count)]  # one-tile files
        out.append(ids)  # one file of `count` tiles
    return out


def code_all(model, batches: list[np.ndarray]) -> list[tuple[float, bool, int]]:
    with Probe() as probe:
        for ids in batches:
            lengths = np.full(len(ids), ids.shape[1])
            ec.encode_ids(model, ids, lengths)
    return probe.rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--out", default="reports/hostile-inputs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gpt = load_entropy_model(Path("generation/pretrained/gpt_emoji"))
    runs = {
        "emoji32 static": ("emoji32", "emoji", [1, 4, 16, 64], None),
        "emoji32 GPT": ("emoji32", "emoji", [1, 16, 64], gpt),
        "photo32 static": ("photo32", "photos", [1, 8, 32], None),
    }
    report = {
        "lookahead_bits": fmt.RANGE_LOOKAHEAD_BITS,
        "writer_margin_bits": ec._WRITER_MARGIN_BITS,
    }
    for label, (name, data, ks, model) in runs.items():
        model = model or static_table.load(tv.hub.SHIPPED_DIR / name)
        count = args.images if model is not gpt else min(args.images, 16)
        rows = code_all(model, tile_ids(name, data, count, ks))
        slack = [r[0] for r in rows]
        report[label] = {
            "payloads": len(rows),
            "max_bound_minus_payload_bits": round(max(slack), 2),
            "mean_bound_minus_payload_bits": round(float(np.mean(slack)), 2),
            "lengthened_by_writer": sum(r[1] for r in rows),
            "payload_bytes_range": [min(r[2] for r in rows), max(r[2] for r in rows)],
        }
        print(label, report[label], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "range-slack.json", (json.dumps(report, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
