"""Write the starting weights of a 2x-image tokenizer, made from a trained one, as a pretrained
directory that `vistok train --model.init_from DIR` loads (see `tokenizers_vis.training.upscale`).

    .venv/bin/python tools/upscale_init.py --source photo32 --preset photo64_fsq \
        --out runs/photo64/init_photo32x2
"""

from __future__ import annotations

import argparse

import torch

from tokenizers_vis.cli.common import run
from tokenizers_vis.errors import VistokError
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer
from tokenizers_vis.training.upscale import upscale_tokenizer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="upscale_init", description=__doc__.split("\n")[0])
    p.add_argument("--source", required=True, help="a shipped name or pretrained directory")
    p.add_argument("--preset", required=True, help="the new tokenizer's preset (2x image size)")
    p.add_argument("--out", required=True, help="the directory to write")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights that start fresh")

    def body() -> int:
        args = p.parse_args(argv)
        torch.manual_seed(args.seed)
        try:
            new = upscale_tokenizer(
                Tokenizer.from_pretrained(args.source), preset_spec(args.preset)
            )
        except (KeyError, ValueError) as err:
            raise VistokError(f"{args.source} -> {args.preset}: {err}") from None
        extra = {"upscaled_from": str(args.source), "seed": args.seed}
        print(new.save_pretrained(args.out, extra=extra))
        return 0

    return run(body, "upscale_init", writes=True)


if __name__ == "__main__":
    raise SystemExit(main())
