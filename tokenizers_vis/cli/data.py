"""`vistok data`: pack data sets into WebDataset shards, show and summarise them.

    vistok data pack SRC OUT --size N --shard-size M [--split S ...]
    vistok data show SPEC [--split S] [--size N] [--out sheet.png]
    vistok data summary SPEC [--size N]

SRC / SPEC is a data spec: emoji, photos, folder:/dir, shards:/dir-or-glob (a bare existing
directory means folder:). User mistakes print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

from tokenizers_vis.cli.common import ArgumentParser

SPLITS = ("train", "val", "test")


def _spec(text: str) -> str:
    from tokenizers_vis.data.build import DATASETS

    name = text.partition(":")[0]
    if name not in DATASETS and Path(text).is_dir():
        return f"folder:{text}"
    return text


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"must be between 1 and 4096, got {value}")
    return value


def _build(spec: str, split: str, size: int, args: argparse.Namespace, **extra):
    from tokenizers_vis.data.build import build_dataset, parse_spec

    name = parse_spec(spec)[0]
    kwargs = {}
    if name == "photos":  # packed crops must be reproducible, train included
        kwargs = {"deterministic": True, "seed": args.seed}
        if getattr(args, "crops", None):
            kwargs["crops_per_epoch"] = args.crops
    return build_dataset(spec, split, size, **kwargs, **extra)


def cmd_pack(args: argparse.Namespace) -> int:
    from tokenizers_vis.data.build import parse_spec
    from tokenizers_vis.data.shards import pack_dataset
    from tokenizers_vis.data.transforms import BadImageWarning

    spec = _spec(args.src)
    # Every split is built (and its files checked) before anything is written: a mistake in the
    # data stops the command with nothing on disk. A split the path hash gives no image (a small
    # folder) is packed empty, with a warning, so that its index says 0.
    empty_ok = {"allow_empty": True} if parse_spec(spec)[0] == "folder" else {}
    built, caught = {}, []
    for split in args.split or SPLITS:
        with warnings.catch_warnings(record=True) as seen:  # counted in the summary instead
            warnings.simplefilter("always")
            built[split] = _build(spec, split, args.size, args, **empty_ok)
        caught += [w for w in seen if not issubclass(w.category, BadImageWarning)]
    if not any(len(ds) for ds in built.values() if hasattr(ds, "__len__")) and all(
        hasattr(ds, "__len__") for ds in built.values()
    ):
        skipped = sum((getattr(ds, "skipped", Counter()) for ds in built.values()), Counter())
        why = ", ".join(f"{r}: {n}" for r, n in skipped.most_common()) or "no image files"
        raise FileNotFoundError(f"no readable images in {args.src} ({why}); nothing written")
    for split, ds in built.items():
        if hasattr(ds, "__len__") and len(ds) == 0:
            print(
                f"warning: split {split!r} has no images ({args.src} is small: the path hash "
                "gives each split its share); its index records 0",
                file=sys.stderr,
            )
        summary = pack_dataset(
            ds,
            args.out,
            split,
            args.shard_size,
            overwrite=args.overwrite,
            progress=not args.quiet,
            source=spec,
            seed=args.seed,
        )
        summary.skipped.update(getattr(ds, "skipped", Counter()))
        skipped = ", ".join(f"{r}: {n}" for r, n in summary.skipped.most_common()) or "none"
        print(
            f"{split}: {summary.written} images in {len(summary.shards)} shards, "
            f"{summary.skipped.total()} skipped ({skipped})"
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"wrote {Path(args.out).resolve()}")
    return 0


def _label_counts(ds) -> Counter[int] | None:
    import webdataset as wds

    from tokenizers_vis.data.shards import ShardDataset

    if hasattr(ds, "labels"):
        return Counter(int(v) for v in ds.labels)
    if isinstance(ds, ShardDataset):  # read only the .cls members, no image decoding
        pipe = wds.DataPipeline(wds.SimpleShardList(ds.urls), wds.tarfile_to_samples())
        return Counter(int(s["cls"]) for s in pipe)
    return None


def _table(spec: str, size: int, args: argparse.Namespace) -> list:
    rows, per_class, names, missing = [], {}, [], None
    for split in SPLITS:
        try:
            ds = _build(spec, split, size, args)
        except FileNotFoundError as err:
            missing = missing or err
            continue  # e.g. shards packed for some splits only
        counts = _label_counts(ds)
        n = sum(counts.values()) if counts is not None else len(ds)
        rows.append((split, n))
        per_class[split] = counts
        names = names or list(getattr(ds, "class_names", []))
    if not rows:
        raise missing or FileNotFoundError(f"no data found for {spec}")
    print(f"{spec}  size {size}")
    print(f"{'split':<8}{'count':>8}")
    for split, n in rows:
        print(f"{split:<8}{n:>8}")
    if names and all(c is not None for c in per_class.values()):
        width = max(12, *map(len, names)) + 2
        print("\n" + f"{'class':<{width}}" + "".join(f"{s:>8}" for s in per_class))
        for i, name in enumerate(names):
            print(f"{name:<{width}}" + "".join(f"{c[i]:>8}" for c in per_class.values()))
    return rows


def cmd_summary(args: argparse.Namespace) -> int:
    _table(_spec(args.spec), args.size, args)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import torch
    import torchvision

    from tokenizers_vis.data.transforms import to_pil

    spec = _spec(args.spec)
    _table(spec, args.size, args)
    ds = _build(spec, args.split, args.size, args)
    if hasattr(ds, "__len__"):
        step = max(1, len(ds) // args.count)
        images = [ds[i][0] for i in range(0, len(ds), step)][: args.count]
    else:
        images = [x for x, _ in zip((x for x, _ in ds), range(args.count), strict=False)]
    grid = torchvision.utils.make_grid(torch.stack(images), nrow=args.nrow, padding=2, pad_value=1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    to_pil(grid).save(out)  # (3 H W) contact sheet
    print(f"contact sheet of {len(images)} {args.split} images: {out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `data` and its subcommands on an argparse subparsers object.

    The parsed namespace is run with `run(args)`, which turns user errors into status 2.
    """
    parser = subparsers.add_parser(
        "data",
        help="pack, show and summarise data sets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _fill(parser)
    return parser


def _fill(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True, metavar="{pack,show,summary}")
    pack = sub.add_parser("pack", help="write a data spec to WebDataset tar shards")
    pack.add_argument("src", help="data spec: emoji, photos, folder:DIR, shards:DIR|GLOB, or a DIR")
    pack.add_argument("out", help="output folder for {split}-NNNNNN.tar and {split}.json")
    pack.add_argument("--size", type=_size, required=True, help="image side in pixels")
    pack.add_argument("--shard-size", type=_size, default=1000, help="samples per shard")
    pack.add_argument(
        "--split",
        action="append",
        choices=[*SPLITS, "all"],
        help="split(s) to pack (repeatable; default train, val and test)",
    )
    pack.add_argument("--crops", type=int, default=None, help="photos: crops per split")
    pack.add_argument(
        "--seed", type=int, default=0, help="seed of the sample order and photo crops"
    )
    pack.add_argument("--overwrite", action="store_true", help="replace existing shards")
    pack.add_argument("--quiet", action="store_true", help="no progress bar")
    pack.set_defaults(func=cmd_pack)
    for name, func, help_ in (
        ("show", cmd_show, "contact sheet PNG and summary table"),
        ("summary", cmd_summary, "count per split and per class"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("spec", help="data spec: emoji, photos, folder:DIR, shards:DIR|GLOB")
        p.add_argument("--size", type=_size, default=32, help="image side in pixels")
        p.add_argument("--seed", type=int, default=0, help="photos: crop seed")
        p.set_defaults(func=func)
    show = sub.choices["show"]
    show.add_argument("--split", choices=[*SPLITS, "all"], default="train")
    show.add_argument("--out", default="contact_sheet.png", help="PNG path to write")
    show.add_argument("--count", type=_size, default=64, help="images on the sheet")
    show.add_argument("--nrow", type=_size, default=8, help="images per row")


def main(argv: list[str] | None = None) -> int:
    """Run `vistok data ...`; returns the exit status (2 for user mistakes)."""
    parser = ArgumentParser(
        prog="vistok data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _fill(parser)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse already printed usage and the message
        return int(exit_.code or 0)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run parsed `vistok data` arguments (from `main` or `add_parser`); user errors give 2."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        print(f"vistok data {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vistok data summary ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Skipped files are the user's data, not our code: one plain line, no source location.
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
