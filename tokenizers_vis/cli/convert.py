"""`vistok convert`: a published checkpoint (TiTok, One-D-Piece, FlexTok) -> a pretrained directory.

    vistok convert titok tokenizer_titok_b64.bin titok_b64 --vqgan maskgit-vqgan.bin
    vistok convert flextok EPFL-VILAB/flextok_d18_d18_in1k flextok_d18   # from the local HF cache
    vistok encode --model titok_b64 photo.jpg

SRC is the checkpoint file (safetensors, or a PyTorch state dict read with weights_only), a
directory holding one, or a Hugging Face repository id already in the local cache (nothing is
downloaded). The config.json beside the checkpoint is used unless --config names another.
Exit status: 0 written, 1 the inputs cannot be converted (the message names the file and lists
what is wrong; nothing is written), 2 usage error.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers_vis.cli.common import ArgumentParser, add_limit_flags, limits_from_args, run


def build_parser(families: list[str]) -> ArgumentParser:
    parser = ArgumentParser(
        prog="vistok convert",
        description="Convert a published tokenizer checkpoint into a vistok pretrained directory.",
    )
    parser.add_argument("family", choices=families, help="the published family")
    parser.add_argument("src", help="checkpoint file, directory, or cached repository owner/name")
    parser.add_argument("dst", type=Path, help="pretrained directory to write")
    parser.add_argument("--vqgan", help="the MaskGIT-VQGAN weights (legacy TiTok models)")
    parser.add_argument("--config", type=Path, help="the published config.json (default: beside)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace DST if it is a pretrained directory"
    )
    add_limit_flags(parser)  # the published config.json and safetensors headers
    return parser


def main(argv: list[str] | None = None) -> int:
    from tokenizers_vis import convert as conversions

    try:
        args = build_parser(sorted(conversions.FAMILIES)).parse_args(argv)
    except SystemExit as exit_:  # argparse printed its one line (or the help)
        return int(exit_.code or 0)

    def body() -> int:
        out = conversions.convert(
            args.family,
            args.src,
            args.dst,
            vqgan=args.vqgan,
            config=args.config,
            overwrite=args.overwrite,
            limits=limits_from_args(args),
        )
        print(f"wrote {out}")
        return 0

    return run(body, "vistok convert")


if __name__ == "__main__":
    raise SystemExit(main())
