"""`vistok export CKPT OUT_DIR [--weights ema|raw]`: a training checkpoint -> a pretrained
directory (config.json + model.safetensors); see `tokenizers_vis.training.export`."""

from __future__ import annotations

from pathlib import Path

from tokenizers_vis.cli.common import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = ArgumentParser(prog="vistok export", description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path, help="Lightning checkpoint (.ckpt)")
    parser.add_argument("out_dir", type=Path, help="pretrained directory to write")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema")
    args = parser.parse_args(argv)
    if not args.ckpt.is_file():
        print(f"vistok export: error: {args.ckpt} is not a file", file=sys.stderr)
        return 2
    from tokenizers_vis.training.export import export

    try:
        out = export(args.ckpt, args.out_dir, args.weights)
    except (ValueError, KeyError, RuntimeError) as err:
        print(f"vistok export: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
