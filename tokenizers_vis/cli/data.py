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

from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.cli.common import ArgumentParser, number, run
from tokenizers_vis.data.errors import MissingDataError
from tokenizers_vis.data.summary import SPLITS, DataSummary, contact_sheet, summarize


def _spec(text: str) -> str:
    from tokenizers_vis.data.build import DATASETS

    name = text.partition(":")[0]
    if name not in DATASETS and Path(text).is_dir():
        return f"folder:{text}"
    return text


_size = number(int, 1, 4096)  # argparse type: an image side or a count


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
        raise MissingDataError(f"no readable images in {args.src} ({why}); nothing written")
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


def _summary(spec: str, size: int, args: argparse.Namespace) -> DataSummary:
    summary = summarize(spec, size, lambda split: _build(spec, split, size, args))
    print("\n".join(summary.lines()))
    return summary


def cmd_summary(args: argparse.Namespace) -> int:
    _summary(_spec(args.spec), args.size, args)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    spec = _spec(args.spec)
    _summary(spec, args.size, args)
    sheet, count = contact_sheet(_build(spec, args.split, args.size, args), args.count, args.nrow)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, sheet)
    print(f"contact sheet of {count} {args.split} images: {out}")
    return 0


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


def data(argv: list[str] | None) -> int:
    parser = ArgumentParser(
        prog="vistok data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _fill(parser)
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except BrokenPipeError:  # `vistok data summary ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: list[str] | None = None) -> int:
    """Run `vistok data ...`; returns the exit status (2 for user mistakes)."""
    return run(lambda: data(argv), "vistok data", writes=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # Skipped files are the user's data, not our code: one plain line, no source location.
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
