"""`vistok decode`: .vtok token files (and .vtoks containers) -> images at their original size.

    vistok decode photo.vtok                         # photo.png beside it
    vistok decode photo.vtok -o photo.webp           # format from the name (lossless WebP)
    vistok decode tokens/ -o images/ --format jpeg --quality 90
    vistok decode set.vtoks -o set/                  # every record, named as encoded
    vistok decode photo.vtok --entropy-model GPT_DIR # a file range coded with that GPT
    vistok decode photo.vtok --deblock               # tile borders blended (no seams)

Without --model the file's header names the tokenizer, and a shipped model with that identity
is used. Files range coded with the tokenizer's static table find it beside the tokenizer;
files coded with another entropy model need --entropy-model (its identity is checked). Files
from another tokenizer or entropy model, truncated or corrupted files are refused, each with its
reason, and so is a file that asks for more than the limits allow (an image above --max-pixels,
an entropy model's coding group above --max-memory: raise them for files you trust). Files of
thousands of tiles decode in batches into one image, with a bar of their tiles. Exit status:
0 all decoded, 1 some failed, 2 usage error, 130 / 143 interrupted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizers_vis.cli.batch.files import FORMATS, Failure, Summary, decode_files
from tokenizers_vis.cli.batch.options import add_entropy_model, add_runtime, load_codec, report
from tokenizers_vis.cli.batch.paths import expand
from tokenizers_vis.cli.common import ArgumentParser, number, positive, run
from tokenizers_vis.codec.container import Container, is_container
from tokenizers_vis.codec.format import Header, VtokError, read_header
from tokenizers_vis.codec.identity import find_shipped
from tokenizers_vis.errors import UsageError

PROG = "vistok decode"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE", help=".vtok / .vtoks files, folders")
    parser.add_argument("-o", "--output", help="output file (one input) or directory")
    parser.add_argument("--format", choices=list(FORMATS), help="default: from -o's name, or png")
    parser.add_argument(
        "--quality", type=number(int, 0, 100), help="WebP / JPEG quality (default lossless / 95)"
    )
    parser.add_argument("--num-steps", type=positive, help="sampling steps (sampling decoders)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (sampling decoders)")
    parser.add_argument(
        "--deblock",
        action="store_true",
        help="blend the tile borders (seams: see tokenizers_vis/codec/deblock.py)",
    )
    add_entropy_model(
        parser,
        "the entropy model the files were coded with (a GPT directory or shipped name, "
        "or a static table other than the tokenizer's own)",
    )
    add_runtime(parser, model_default=None)  # with the limit flags
    return parser


def _first_header(inputs: list[str]) -> tuple[Header | None, list[Failure]]:
    """The header of the first readable input, to find the model that wrote it; without one,
    why each input could not be read (what decoding them would report)."""
    files, failed, _, _ = expand(inputs, frozenset({".vtok", ".vtoks"}))
    failures = [Failure(p, r) for p, r in failed]
    for path, _ in files:
        try:
            if is_container(path):
                with Container(path) as box:
                    if not len(box):
                        failures.append(Failure(str(path), "no records in the container"))
                        continue
                    data = box[0]
            else:
                data = path.read_bytes()
            return read_header(data)[0], []
        except OSError as err:
            failures.append(Failure(str(path), f"unreadable: {err.strerror}"))
        except (VtokError, IndexError) as err:
            failures.append(Failure(str(path), str(err)))
    return None, failures


def pick_model(inputs: list[str]) -> str | list[Failure]:
    """--model's default: the shipped model whose identity the first readable file names, or
    when no file is readable, each file's reason."""
    header, failures = _first_header(inputs)
    if header is None and not failures:
        raise UsageError("no .vtok input to take the model from; pass --model")
    if header is None:
        return failures
    found = find_shipped(header.tokenizer_id)
    if found is None:
        raise UsageError(
            f"the files were written by tokenizer {header.tokenizer_id.hex()}, which is not a "
            "shipped model; pass --model DIR"
        )
    return str(found)


def decode(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    fmt = args.format
    if fmt is None and args.output and len(args.inputs) == 1:
        suffix = Path(args.output).suffix.lower()
        fmt = next((f for f, s in FORMATS.items() if suffix in (s, f".{f}")), None)
    model = args.model or pick_model(args.inputs)
    if not isinstance(model, str):  # no input is readable: each one's reason, as with --model
        return report(PROG, Summary("decoded", failures=model))
    codec = load_codec(PROG, model, args, args.entropy_model)
    summary = decode_files(
        codec,
        args.inputs,
        args.output,
        fmt=fmt or "png",
        quality=args.quality,
        num_steps=args.num_steps,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
        deblock=args.deblock,
    )
    return report(PROG, summary)


def main(argv: list[str] | None = None) -> int:
    """Run `vistok decode`; returns the exit status."""
    return run(lambda: decode(argv), PROG, writes=True)


if __name__ == "__main__":
    raise SystemExit(main())
