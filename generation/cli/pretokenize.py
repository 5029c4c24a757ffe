"""tokenize a data set once into token shards for GPT training

    vistok pretokenize --model TOK --data SPEC -o DIR [--splits train,val] [--flip] [--crops N]
        [--crop-scale 0.8] [--batch-size 64] [--shard-size 5000] [--num-images N] [--seed 0]
        [--device auto] [--precision auto] [--overwrite] [--quiet]

Every image of each split is encoded with all K tokens (a GPT trained on them generates any
prefix k <= K). Augmentation, on the train split only: `--flip` adds the mirrored image, `--crops N`
adds N random square crops (area fraction in [crop-scale, 1], resized back; each mirrored at
random with --flip); every view is tokenized and stored as its own sample. Images are visited in a
permutation seeded by --seed, so shards mix all classes. Writes `DIR/{split}-NNNNNN.tar` and
`DIR/{split}.json` (see generation/data.py); each file appears complete or not at all.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import IterableDataset
from tqdm.auto import tqdm

from generation.data import TokenShardWriter
from tokenizers_vis import Tokenizer
from tokenizers_vis.cli.common import (
    ArgumentParser,
    add_limit_flags,
    limits_from_args,
    non_negative,
    positive,
    run,
)
from tokenizers_vis.data import DataError, build_dataset
from tokenizers_vis.errors import UsageError
from tokenizers_vis.hub import PretrainedError
from tokenizers_vis.precision import PRECISIONS, autocast, pick_device

PROG = "vistok pretokenize"


def random_crop(x: Tensor, scale: float, generator: torch.Generator) -> Tensor:
    """A random square crop of x (3 s s) covering an area fraction in [scale, 1], resized back."""
    s = x.shape[-1]
    area = scale + (1 - scale) * torch.rand((), generator=generator).item()
    side = max(1, min(s, round(math.sqrt(area) * s)))
    top, left = (int(torch.randint(0, s - side + 1, (), generator=generator)) for _ in range(2))
    crop = x[None, :, top : top + side, left : left + side]  # (1 3 side side)
    out = F.interpolate(crop, size=(s, s), mode="bicubic", antialias=True, align_corners=False)
    return out[0].clamp(-1, 1)


def views(
    images: Tensor, flip: bool, crops: int, scale: float, generator: torch.Generator
) -> Iterator[tuple[str, Tensor]]:
    """(name, images (b 3 s s)) of every view of a batch: the original, mirror, crops."""
    yield "orig", images
    if flip:
        yield "flip", images.flip(-1)
    for c in range(crops):
        out = torch.stack([random_crop(x, scale, generator) for x in images])  # (b 3 s s)
        if flip:
            mirror = torch.rand(len(images), generator=generator) < 0.5  # (b,)
            out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
        yield f"crop{c}", out


def batches(
    dataset, batch_size: int, seed: int, limit: int | None
) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """(indices, images (b 3 s s), labels (b,)): map-style data in a seeded permutation, streams
    in their order; at most `limit` images."""
    if not isinstance(dataset, IterableDataset):
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        items = ((int(i), *dataset[int(i)]) for i in order)
    else:
        items = ((i, x, y) for i, (x, y) in enumerate(dataset))
    chunk: list[tuple[int, Tensor, int]] = []
    for n, item in enumerate(items):
        if limit is not None and n >= limit:
            break
        chunk.append(item)
        if len(chunk) == batch_size:
            yield _stack(chunk)
            chunk = []
    if chunk:
        yield _stack(chunk)


def _stack(chunk: list[tuple[int, Tensor, int]]) -> tuple[list[int], Tensor, Tensor]:
    return (
        [i for i, _, _ in chunk],
        torch.stack([x for _, x, _ in chunk]),
        torch.tensor([int(y) for _, _, y in chunk]),
    )


def pretokenize_split(tok: Tokenizer, args: argparse.Namespace, split: str, device) -> dict:
    try:
        dataset = build_dataset(args.data, split, tok.image_size)
    except DataError as err:
        raise UsageError(f"--data {args.data} split {split!r}: {err}") from None
    class_names = list(getattr(dataset, "class_names", []) or [])
    augment = split == "train"
    flip, crops = args.flip and augment, args.crops if augment else 0
    names = ["orig"] + (["flip"] if flip else []) + [f"crop{c}" for c in range(crops)]
    info = {
        "tokenizer": args.model,
        "image_size": tok.image_size,
        "max_tokens": tok.max_tokens,
        "num_classes": len(class_names),
        "class_names": class_names,
        "source": args.data,
        "views": names,
        "crop_scale": args.crop_scale if crops else None,
        "seed": args.seed,
    }
    writer = TokenShardWriter(  # OutputExistsError: shards there and no --overwrite
        args.out, split, tok.vocab_sizes, args.shard_size, args.overwrite, info
    )
    total = None if isinstance(dataset, IterableDataset) else len(dataset)
    total = min(total, args.num_images) if total and args.num_images else total
    generator = torch.Generator().manual_seed(args.seed)
    bar = tqdm(total=total, desc=f"pretokenize {split}", unit="img", disable=args.quiet)
    for indices, images, labels in batches(dataset, args.batch_size, args.seed, args.num_images):
        encoded = {}
        for view, x in views(images, flip, crops, args.crop_scale, generator):
            with autocast(device, args.precision):
                encoded[view] = tok.encode(x.to(device)).ids.cpu().numpy()  # (b K g)
        for i, index in enumerate(indices):  # the views of an image stay together
            for view, ids in encoded.items():
                meta = {"index": index, "view": view}
                writer.write(f"{index:08d}_{view}", ids[i], int(labels[i]), meta)
        bar.update(len(indices))
    bar.close()
    return writer.close()


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="tokenizer: pretrained directory or name")
    p.add_argument("--data", required=True, help="data spec: emoji, photos, folder:DIR, shards:..")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--splits", default="train,val", help="comma-separated (default train,val)")
    p.add_argument("--flip", action="store_true", help="train: add the mirrored image")
    p.add_argument(
        "--crops", type=non_negative, default=0, help="train: add N random crops per image"
    )
    p.add_argument("--crop-scale", type=float, default=0.8, help="smallest crop area fraction")
    p.add_argument("--batch-size", type=positive, default=64)
    p.add_argument("--shard-size", type=positive, default=5000, help="samples per shard")
    p.add_argument("--num-images", type=positive, help="at most N images per split (default all)")
    p.add_argument("--seed", type=int, default=0, help="seeds the order and the crops")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS))
    p.add_argument("--overwrite", action="store_true", help="replace existing shards")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_limit_flags(p)
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.crops < 0 or not 0 < args.crop_scale <= 1:
        raise UsageError("--crops must be >= 0 and --crop-scale in (0, 1]")
    if args.batch_size < 1 or args.shard_size < 1 or (args.num_images or 1) < 1:
        raise UsageError("--batch-size, --shard-size and --num-images must be positive")
    args.splits = [s for s in args.splits.split(",") if s]
    if not args.splits:
        raise UsageError("--splits is empty")


def pretokenize(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    device = pick_device(args.device)  # DeviceError names the device
    try:
        limits = limits_from_args(args)
        tok = Tokenizer.from_pretrained(args.model, map_location=device, limits=limits)
    except PretrainedError as err:
        raise UsageError(f"--model {args.model}: {err}") from None
    for split in args.splits:
        info = pretokenize_split(tok, args, split, device)
        print(f"{split}: {info['count']} samples in {len(info['shards'])} shards -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `vistok pretokenize`; returns the exit status."""
    return run(lambda: pretokenize(argv), PROG, writes=True)


if __name__ == "__main__":
    raise SystemExit(main())
