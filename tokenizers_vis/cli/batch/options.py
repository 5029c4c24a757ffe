"""What `vistok encode` and `vistok decode` share: their runtime options, loading the codec those
options name (each mistake reported against its option), and the closing summary."""

from __future__ import annotations

import argparse
import sys

from tokenizers_vis.cli.batch.files import Summary
from tokenizers_vis.cli.common import add_limit_flags, limits_from_args, positive
from tokenizers_vis.codec import static_table
from tokenizers_vis.codec.api import Codec
from tokenizers_vis.codec.entropy import EntropyModel, EntropyModelLoadError, load_entropy_model
from tokenizers_vis.codec.errors import OptionsError
from tokenizers_vis.errors import UsageError
from tokenizers_vis.hub import PretrainedError
from tokenizers_vis.limits import Limits
from tokenizers_vis.precision import PRECISIONS, DeviceError, resolve_precision
from tokenizers_vis.text import printable

__all__ = ["add_entropy_model", "add_runtime", "load_codec", "report"]


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
    parser.add_argument("--batch-size", type=positive, default=64, help="tiles per batch")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_limit_flags(parser)


def add_entropy_model(parser: argparse.ArgumentParser, help_: str) -> None:
    parser.add_argument("--entropy-model", metavar="DIR|NAME", help=help_)


def load_codec(
    prog: str, model: str, args: argparse.Namespace, entropy: str | None = None
) -> Codec:
    """The codec, or a UsageError naming what is wrong with --model / --device / the entropy
    model (`entropy`: "static" for the tokenizer's own table, or a path)."""
    limits = limits_from_args(args)
    try:
        codec = Codec.from_pretrained(
            model,
            limits=limits,
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
        )
    except PretrainedError as err:
        raise UsageError(f"--model: {err}") from None
    except DeviceError as err:
        raise UsageError(f"--device: {err}") from None
    if entropy is not None:
        option = "--entropy static" if entropy == "static" else "--entropy-model"
        try:
            codec.set_entropy(_entropy_model(codec, entropy, limits))
        except (EntropyModelLoadError, PretrainedError, OptionsError) as err:
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


def _entropy_model(codec: Codec, entropy: str, limits: Limits) -> EntropyModel:
    if entropy == "static":
        return static_table.load(codec.directory, limits)
    return load_entropy_model(entropy, limits)


def report(prog: str, summary: Summary) -> int:
    """Failures on stderr (one line each, file names escaped: they come from folders and
    containers), the summary line on stdout; the exit status."""
    for failure in summary.failures:
        line = f"{printable(failure.path)}: {printable(failure.reason, backslash=False)}"
        print(f"{prog}: failed: {line}", file=sys.stderr)
    print(summary.line())
    return 0 if summary.ok else 1
