"""`vistok export CKPT OUT_DIR | --onnx OUT_DIR --model NAME|DIR`: a checkpoint -> a pretrained
directory, or a pretrained tokenizer -> ONNX graphs.

    vistok export runs/x/checkpoints/last.ckpt my_tok [--weights ema|raw]
        config.json + model.safetensors (see `tokenizers_vis.training.export`)
    vistok export --onnx my_tok_onnx --model my_tok [--opset 18] [--overwrite]
        encoder.onnx, decoder.onnx, onnx.json (see `tokenizers_vis.deploy`)

Exit status: 0 written, 2 usage error or unusable input (one line on stderr, nothing written),
130 / 143 interrupted by SIGINT / SIGTERM (nothing written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizers_vis.cli.common import (
    ArgumentParser,
    add_limit_flags,
    limits_from_args,
    positive,
    run,
)
from tokenizers_vis.errors import UsageError


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="vistok export",
        description="Turn a training checkpoint into a pretrained directory, or a pretrained "
        "tokenizer into ONNX graphs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + __doc__.split("\n\n")[1],
    )
    parser.add_argument("ckpt", type=Path, nargs="?", help="Lightning checkpoint (.ckpt)")
    parser.add_argument("out_dir", type=Path, nargs="?", help="pretrained directory to write")
    parser.add_argument("--weights", choices=["ema", "raw"], default=None, help="default: ema")
    onnx = parser.add_argument_group("ONNX (instead of CKPT OUT_DIR)")
    onnx.add_argument("--onnx", type=Path, metavar="OUT_DIR", help="write ONNX graphs here")
    onnx.add_argument("--model", help="shipped model name or pretrained directory to export")
    onnx.add_argument("--opset", type=positive, default=None, help="ONNX opset (default: 18)")
    onnx.add_argument("--overwrite", action="store_true", help="replace a previous ONNX export")
    add_limit_flags(parser)  # bound loading --model (a checkpoint is the user's own training run)
    return parser


def export(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_usage(parser, args)
    return _export_onnx(args) if args.onnx is not None else _export_checkpoint(args)


def main(argv: list[str] | None = None) -> int:
    """Run `vistok export`; returns the exit status."""
    return run(lambda: export(argv), "vistok export", writes=True)


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options of one mode given to the other: one line, status 2 (via `parser.error`)."""
    if args.onnx is not None:
        if args.ckpt is not None or args.weights is not None:
            parser.error(
                "--onnx exports a pretrained --model, not a checkpoint: export the checkpoint "
                "first (vistok export CKPT DIR), then --onnx OUT --model DIR"
            )
        if args.model is None:
            parser.error("--onnx needs --model NAME|DIR")
    elif args.model is not None or args.opset is not None or args.overwrite:
        parser.error("--model, --opset and --overwrite go with --onnx")
    elif args.ckpt is None or args.out_dir is None:
        parser.error("give CKPT OUT_DIR, or --onnx OUT_DIR --model NAME|DIR")


def _export_checkpoint(args: argparse.Namespace) -> int:
    if not args.ckpt.is_file():
        raise UsageError(f"{args.ckpt} is not a file")
    from tokenizers_vis.training.export import export as export_checkpoint

    out = export_checkpoint(args.ckpt, args.out_dir, args.weights or "ema")  # CheckpointError
    print(f"wrote {out}")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from tokenizers_vis.atomic import OutputExistsError
    from tokenizers_vis.deploy.onnx_export import DEFAULT_OPSET, export_onnx

    try:  # PretrainedError, OnnxExportError, OnnxMissingError: one line from `run`
        out = export_onnx(
            args.model,
            args.onnx,
            args.opset or DEFAULT_OPSET,
            args.overwrite,
            limits=limits_from_args(args),
        )
    except OutputExistsError as err:
        if not args.onnx.is_dir() or args.overwrite:
            raise
        raise UsageError(f"{err}; pass --overwrite to replace it") from None
    print(f"wrote {out} (encoder.onnx, decoder.onnx, onnx.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
