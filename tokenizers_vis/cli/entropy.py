"""`vistok entropy`: fit a tokenizer's static entropy model (per-position id frequencies).

    vistok entropy fit --model emoji32 --data emoji --split train --eval-split test
    vistok entropy fit --model DIR --data folder:/images -o tables/ --num-images 5000

`fit` encodes every image of the split with all K tokens (what `vistok encode` writes at the
default k), counts each id per position and sub-codebook, and writes the add-one smoothed table
as `entropy_static.safetensors` + `entropy_static.json` into -o, by default the tokenizer's own
directory, where `vistok encode --entropy static` and `vistok decode` find it. --eval-split
measures the table's bits per token on held-out images and records it in the JSON.

Exit status: 0 written, 2 usage error (nothing written), 130 / 143 interrupted (nothing written).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tokenizers_vis.cli.common import (
    ArgumentParser,
    add_limit_flags,
    limits_from_args,
    number,
    positive,
    run,
)
from tokenizers_vis.codec.bitpack import bit_widths
from tokenizers_vis.codec.entropy import STATIC_CONFIG
from tokenizers_vis.codec.identity import directory_identity
from tokenizers_vis.codec.static_table import STATIC_WEIGHTS, StaticTable
from tokenizers_vis.data.errors import DataError
from tokenizers_vis.errors import UsageError
from tokenizers_vis.hub import PretrainedError
from tokenizers_vis.precision import PRECISIONS, DeviceError, autocast, pick_device
from tokenizers_vis.tokenizer import Tokenizer

PROG = "vistok entropy fit"


def encode_split(
    tok: Tokenizer, args: argparse.Namespace, split: str, device: torch.device
) -> Iterator[np.ndarray]:
    """Batches of ids (b, K, g) of a split's images (at most --num-images), in data order."""
    from tokenizers_vis.data import build_dataset

    try:
        dataset = build_dataset(args.data, split, tok.image_size)
    except DataError as err:
        raise UsageError(f"--data {args.data} split {split!r}: {err}") from None
    total = len(dataset) if hasattr(dataset, "__len__") else None
    limit = args.num_images
    total = min(total, limit) if total is not None and limit else total or limit
    bar = tqdm(total=total, desc=f"encode {split}", unit="img", disable=args.quiet)
    seen = 0
    for images, _ in DataLoader(dataset, batch_size=args.batch_size):
        images = images[: limit - seen] if limit else images  # (b 3 s s) in [-1, 1]
        with torch.inference_mode(), autocast(device, args.precision):
            ids = tok.encode(images.to(device)).ids  # (b K g)
        seen += len(images)
        bar.update(len(images))
        yield ids.cpu().numpy()
        if limit and seen >= limit:
            break
    bar.close()
    if not seen:
        raise UsageError(f"--data {args.data} split {split!r} has no images")


def in_sample_bits(table: StaticTable) -> float:
    """Bits per token the table spends on the ids it was counted from."""
    bits = sum(-(c * np.log2(p)).sum() for c, p in zip(table.counts, table.probs, strict=True))
    return float(bits / table.counts[0].sum())


def fit(args: argparse.Namespace) -> int:
    try:
        limits = limits_from_args(args)
        found = Tokenizer.open_pretrained(args.model, limits)
        directory = found.path
        device = pick_device(args.device)
        tok = Tokenizer.from_pretrained(found, map_location=device, limits=limits).eval()
        identity = directory_identity(found)
    except PretrainedError as err:
        raise UsageError(f"--model: {err}") from None
    except DeviceError as err:
        raise UsageError(f"--device: {err}") from None
    out = Path(args.output) if args.output else directory
    if (out / STATIC_CONFIG).exists() and not args.overwrite:
        raise UsageError(f"{out / STATIC_CONFIG} exists (--overwrite replaces it)")
    vocab, k = tuple(tok.vocab_sizes), tok.max_tokens
    batches = encode_split(tok, args, args.split, device)
    table = StaticTable.fit(batches, vocab, k, args.smoothing, tokenizer_id=identity)
    images = int(table.counts[0][0].sum())
    rate = {args.split: in_sample_bits(table)}
    fixed = sum(bit_widths(vocab))
    print(f"{PROG}: {images} {args.split} images: {rate[args.split]:.3f} bits/token in-sample")
    if args.eval_split:
        bits, tokens, held_out = 0.0, 0, 0
        for ids in encode_split(tok, args, args.eval_split, device):  # (b K g)
            bits += table.bits(ids)
            tokens, held_out = tokens + ids.shape[0] * ids.shape[1], held_out + len(ids)
        rate[args.eval_split] = bits / tokens
        print(
            f"{PROG}: {held_out} {args.eval_split} images: {rate[args.eval_split]:.3f} "
            f"bits/token held out (bit-packed: {fixed})"
        )
    table.info = {
        "data": args.data,
        "split": args.split,
        "images": images,
        "num_images_limit": args.num_images,
        "bits_per_token": rate,
        "bit_packed_bits_per_token": fixed,
    }
    path = table.save(out, overwrite=args.overwrite)  # OutputExistsError if written meanwhile
    print(f"{PROG}: wrote {path} and {STATIC_WEIGHTS} (table id {table.identity.hex()})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="vistok entropy",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{fit}")
    p = sub.add_parser("fit", help="fit and store the static per-position table")
    p.add_argument("--model", default="emoji32", help="tokenizer: name or pretrained directory")
    p.add_argument("--data", required=True, help="data spec: emoji, photos, folder:DIR, ...")
    p.add_argument("--split", default="train", help="split to count (default train)")
    p.add_argument("--eval-split", help="also report bits per token on this split (e.g. test)")
    p.add_argument("-o", "--output", help="folder for the table (default: the model's directory)")
    p.add_argument("--num-images", type=positive, help="at most N images per split")
    p.add_argument(
        "--smoothing", type=number(float, 1e-9), default=1.0, help="added to every count (1)"
    )
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    # fp32 like `vistok encode`: the table describes the ids token files will hold.
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--overwrite", action="store_true", help="replace an existing table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_limit_flags(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `vistok entropy ...`; returns the exit status."""
    return run(lambda: fit(build_parser().parse_args(argv)), PROG, writes=True)


if __name__ == "__main__":
    raise SystemExit(main())
