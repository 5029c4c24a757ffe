"""`vistok encode`: images -> .vtok token files (or one .vtoks container).

    vistok encode photo.jpg                          # photo.vtok beside it, shipped model
    vistok encode photo.jpg -o small.vtok --tokens 16
    vistok encode photos/ -o tokens/ --target-psnr 24 # tree mirrored, k chosen per tile
    vistok encode photo.jpg --target-bytes 4000      # at most 4000 bytes, k where it buys most
    vistok encode photo.jpg --bpp 0.1 --entropy static  # at most 0.1 bits per pixel
    vistok encode 'shots/**/*.png' -o set.vtoks      # one container for a data set
    vistok encode photo.jpg --entropy static         # range coded with the model's static table
    vistok encode photo.jpg --entropy-model GPT_DIR  # range coded with a GPT's probabilities

Exit status: 0 all encoded, 1 some inputs failed (each listed with its reason), 2 usage error,
130 / 143 interrupted by SIGINT / SIGTERM (finished outputs kept, no partial file). A byte budget
that an image cannot meet (under one token per tile) is a usage error: the run stops there with
one line naming the image's size and the smallest file it allows; outputs already finished stay.
"""

from __future__ import annotations

import argparse

from tokenizers_vis.cli.batch.files import encode_files
from tokenizers_vis.cli.batch.options import add_entropy_model, add_runtime, load_codec, report
from tokenizers_vis.cli.common import ArgumentParser, number, positive, run
from tokenizers_vis.codec.api import EncodeOptions
from tokenizers_vis.codec.errors import OptionsError
from tokenizers_vis.codec.layout import LAYOUTS
from tokenizers_vis.data.transforms import MAX_PIXELS
from tokenizers_vis.errors import UsageError

PROG = "vistok encode"


def class_index(text: str | None, names: tuple[str, ...]) -> int | None:
    """--entropy-class (a class name or index) -> its index, or UsageError."""
    if text is None:
        return None
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    raise UsageError(
        f"--entropy-class {text!r}: the entropy model's classes are {shown}"
        if names
        else "--entropy-class: the entropy model is not class-conditional"
    )


def k_values(text: str) -> tuple[int, ...] | str:
    """--k-grid: "all" or comma-separated positive integers."""
    if text == "all":
        return text
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not 'all' or integers separated by commas: {text!r}"
        ) from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"k values must be >= 1, got {text}")
    return values


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs")
    parser.add_argument(
        "-o", "--output", help="output file (one input) or directory; .vtoks: one container"
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--tokens", type=positive, help="k tokens per tile (default: K)")
    length.add_argument(
        "--target-psnr",
        type=number(float, 0.0),
        metavar="DB",
        help="smallest k per tile meeting it",
    )
    length.add_argument(
        "--target-bytes",
        type=positive,
        metavar="N",
        help="files of at most N bytes: k per tile from a rate-distortion allocation (MSE); "
        "above what K tokens in every tile cost, each tile gets its least-error k",
    )
    length.add_argument(
        "--bpp",
        type=number(float, 0.0),
        metavar="X",
        help="as --target-bytes with floor(X * width * height / 8) bytes for each image",
    )
    parser.add_argument(
        "--k-grid",
        type=k_values,
        metavar="all|K1,K2,..",
        help="with a budget: the k measured per tile (1 and K always; default 1,2,3,4,6,8,12,"
        "... : one decoder pass each); all: every k",
    )
    parser.add_argument("--refine-steps", type=number(int, 0), default=0, help="refinement steps")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default="tile", help="see docs/token-format.md"
    )
    parser.add_argument(
        "--scale", type=number(float, 0.0, 1.0), default=1.0, help="tile layout: resample first"
    )
    parser.add_argument("--append", action="store_true", help="add to an existing .vtoks")
    coding = parser.add_mutually_exclusive_group()
    coding.add_argument(
        "--entropy",
        choices=("none", "static"),
        default="none",
        help="static: range code the ids with the tokenizer's static table (payload coding 1; "
        "`vistok entropy fit` makes it); none: bit-packed (default)",
    )
    add_entropy_model(
        coding,
        "range code the ids with this entropy model: a GPT directory or shipped name "
        "(coding 2, e.g. gpt_emoji) or a static table's directory",
    )
    parser.add_argument(
        "--entropy-class",
        metavar="CLASS",
        help="a class-conditional entropy model codes with this class (name or index; stored "
        "in the file); default: its unconditional prediction",
    )
    add_runtime(parser, model_default="emoji32")  # with the limit flags
    for action in parser._actions:  # here --max-pixels bounds the input images, as before
        if "--max-pixels" in action.option_strings:
            action.help = f"input images larger than this fail (default {MAX_PIXELS:,})"
    return parser


def encode(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.scale == 0:
        raise UsageError("--scale must be > 0")
    entropy = "static" if args.entropy == "static" else args.entropy_model
    codec = load_codec(PROG, args.model, args, entropy)
    if args.entropy_class is not None and codec.entropy is None:
        raise UsageError("--entropy-class needs --entropy-model")
    names = codec.entropy.class_names if codec.entropy else ()
    if args.k_grid is not None and args.target_bytes is None and args.bpp is None:
        raise UsageError("--k-grid needs --target-bytes or --bpp")
    if args.bpp == 0:
        raise UsageError("--bpp must be > 0")
    grid = args.k_grid
    if grid == "all":
        grid = tuple(range(1, codec.tokenizer.max_tokens + 1))
    options = EncodeOptions(
        num_tokens=args.tokens,
        target_psnr=args.target_psnr,
        target_bytes=args.target_bytes,
        bpp=args.bpp,
        k_grid=grid,
        layout=args.layout,
        scale=args.scale,
        refine_steps=args.refine_steps,
        entropy_class=class_index(args.entropy_class, names),
    )
    try:
        codec.check_options(options)
    except OptionsError as err:
        raise UsageError(
            str(err).replace("num_tokens", "--tokens").replace("k grid", "--k-grid")
        ) from None
    summary = encode_files(
        codec,
        args.inputs,
        args.output,
        options,
        overwrite=args.overwrite,
        append=args.append,
        max_pixels=args.max_pixels or MAX_PIXELS,
        progress=not args.quiet,
    )
    return report(PROG, summary)


def main(argv: list[str] | None = None) -> int:
    """Run `vistok encode`; returns the exit status."""
    return run(lambda: encode(argv), PROG, writes=True)


if __name__ == "__main__":
    raise SystemExit(main())
