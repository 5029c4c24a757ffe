"""`vistok train fit|validate --config a.yaml --config b.yaml ...`: LightningCLI over
TokenizerSystem.

Configs compose: `configs/tokenizer/*.yaml` (model), `configs/data/*.yaml`,
`configs/trainer/*.yaml`.
Resume a killed run with `--ckpt_path last` (ModelCheckpoint keeps `last.ckpt`).
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from tokenizers_vis.data.datamodule import ImageDataModule
from tokenizers_vis.training.system import TokenizerSystem


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    LightningCLI(
        TokenizerSystem,
        ImageDataModule,
        args=argv,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vistok train"},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
