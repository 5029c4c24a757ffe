"""`vistok encode`: images -> .vtok token files (or one .vtoks container).

    vistok encode photo.jpg                          # photo.vtok beside it, shipped model
    vistok encode photo.jpg -o small.vtok --tokens 16
    vistok encode photos/ -o tokens/ --target-psnr 24 # tree mirrored, k chosen per tile
    vistok encode 'shots/**/*.png' -o set.vtoks      # one container for a data set
    vistok encode photo.jpg --entropy static         # range coded with the model's static table
    vistok encode photo.jpg --entropy-model GPT_DIR  # range coded with a GPT's probabilities

Exit status: 0 all encoded, 1 some inputs failed (each listed with its reason), 2 usage error,
130 / 143 interrupted by SIGINT / SIGTERM (finished outputs kept, no partial file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tokenizers_vis.atomic import Interrupted, interruptible
from tokenizers_vis.cli.common import ArgumentParser
from tokenizers_vis.codec import static_table
from tokenizers_vis.codec.api import Codec, EncodeOptions
from tokenizers_vis.codec.entropy import EntropyModel, load_entropy_model
from tokenizers_vis.codec.files import Summary, encode_files
from tokenizers_vis.codec.layout import LAYOUTS
from tokenizers_vis.codec.paths import UsageError
from tokenizers_vis.data.transforms import MAX_PIXELS
from tokenizers_vis.hub import PretrainedError
from tokenizers_vis.precision import PRECISIONS, resolve_precision

# The one `vistok` parser: usage mistakes give one line on stderr and status 2.
Parser = ArgumentParser


def number(kind: type, low: float | None = None, high: float | None = None) -> Callable:
    """An argparse type: `kind` within [low, high] (None = unbounded), one-line errors."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{'-inf' if low is None else low}..{'inf' if high is None else high}"
            raise argparse.ArgumentTypeError(f"must be in {bounds}, got {text}")
        return value

    return parse


def add_runtime(parser: argparse.ArgumentParser, model_default: str | None) -> None:
    """Options every codec command shares: model, device, precision, batch, overwrite, quiet."""
    parser.add_argument(
        "--model",
        default=model_default,
        help="shipped model name or pretrained directory (default: "
        + (model_default or "the shipped model that wrote the files")
        + ")",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (default: the same pixels on every machine); auto / bf16 for speed",
    )
    parser.add_argument("--batch-size", type=number(int, 1), default=64, help="tiles per batch")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_entropy_model(parser: argparse.ArgumentParser, help_: str) -> None:
    parser.add_argument("--entropy-model", metavar="DIR|NAME", help=help_)


def load_codec(
    prog: str, model: str, args: argparse.Namespace, entropy: str | None = None
) -> Codec:
    """The codec, or UsageError naming what is wrong with --model / --device / the entropy
    model (`entropy`: "static" for the tokenizer's own table, or a path)."""
    try:
        codec = Codec.from_pretrained(
            model, device=args.device, precision=args.precision, batch_size=args.batch_size
        )
    except PretrainedError as err:
        raise UsageError(f"--model: {err}") from None
    except ValueError as err:  # pick_device / resolve_precision
        raise UsageError(f"--device: {err}") from None
    if entropy is not None:
        option = "--entropy static" if entropy == "static" else "--entropy-model"
        try:
            codec.set_entropy(_entropy_model(codec, entropy))
        except ValueError as err:  # EntropyModelLoadError, PretrainedError, incompatible
            raise UsageError(f"{option}: {err}") from None
    if not args.quiet:
        choice = resolve_precision(args.precision, codec.device)
        coded = f", entropy coded with the {codec.entropy.describe()}" if codec.entropy else ""
        print(
            f"{prog}: model {model} (id {codec.identity.hex()}) on {codec.device}, "
            f"{choice.name}{coded}",
            file=sys.stderr,
        )
    return codec


def _entropy_model(codec: Codec, entropy: str) -> EntropyModel:
    if entropy == "static":
        return static_table.load(codec.directory)
    return load_entropy_model(entropy)


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


def report(prog: str, summary: Summary) -> int:
    """Failures on stderr (one line each), the summary line on stdout; the exit status."""
    for failure in summary.failures:
        print(f"{prog}: failed: {failure.path}: {failure.reason}", file=sys.stderr)
    print(summary.line())
    return 0 if summary.ok else 1


def guarded(prog: str, run: Callable[[], int]) -> int:
    """Run a command: user mistakes -> one line and 2; SIGINT / SIGTERM -> 130 / 143."""
    try:
        with interruptible():
            return run()
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an output folder that cannot be created
        print(f"{prog}: error: {err.strerror}: {err.filename}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (SIGINT); no partial output was left", file=sys.stderr)
        return 130
    except Interrupted as err:
        print(f"{prog}: interrupted ({err}); no partial output was left", file=sys.stderr)
        return 128 + err.signum


def build_parser() -> Parser:
    parser = Parser(
        prog="vistok encode",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs")
    parser.add_argument(
        "-o", "--output", help="output file (one input) or directory; .vtoks: one container"
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--tokens", type=number(int, 1), help="k tokens per tile (default: K)")
    length.add_argument(
        "--target-psnr",
        type=number(float, 0.0),
        metavar="DB",
        help="smallest k per tile meeting it",
    )
    parser.add_argument("--refine-steps", type=number(int, 0), default=0, help="refinement steps")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default="tile", help="see docs/token-format.md"
    )
    parser.add_argument(
        "--scale", type=number(float, 0.0, 1.0), default=1.0, help="tile layout: resample first"
    )
    parser.add_argument("--append", action="store_true", help="add to an existing .vtoks")
    parser.add_argument(
        "--max-pixels", type=number(int, 1), default=MAX_PIXELS, help="larger images fail"
    )
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
    add_runtime(parser, model_default="emoji32")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `vistok encode`; returns the exit status."""
    prog = "vistok encode"
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse printed its one line (or the help)
        return int(exit_.code or 0)

    def run() -> int:
        if args.scale == 0:
            raise UsageError("--scale must be > 0")
        entropy = "static" if args.entropy == "static" else args.entropy_model
        codec = load_codec(prog, args.model, args, entropy)
        if args.entropy_class is not None and codec.entropy is None:
            raise UsageError("--entropy-class needs --entropy-model")
        names = codec.entropy.class_names if codec.entropy else ()
        options = EncodeOptions(
            num_tokens=args.tokens,
            target_psnr=args.target_psnr,
            layout=args.layout,
            scale=args.scale,
            refine_steps=args.refine_steps,
            entropy_class=class_index(args.entropy_class, names),
        )
        try:
            codec.check_options(options)
        except ValueError as err:
            raise UsageError(str(err).replace("num_tokens", "--tokens")) from None
        summary = encode_files(
            codec,
            args.inputs,
            args.output,
            options,
            overwrite=args.overwrite,
            append=args.append,
            max_pixels=args.max_pixels,
            progress=not args.quiet,
        )
        return report(prog, summary)

    return guarded(prog, run)


if __name__ == "__main__":
    raise SystemExit(main())
