"""`vistok train fit|validate --config a.yaml --config b.yaml ...`: LightningCLI for tokenizers.

Configs compose: `configs/tokenizer/*.yaml` (model), `configs/data/*.yaml`,
`configs/trainer/*.yaml`. Resume a killed run with `--ckpt_path last`. `--precision auto` (the
default) trains in bf16 only where the hardware runs it natively; see
`tokenizers_vis.training.cli`.
"""

from __future__ import annotations

import sys
import warnings

from tokenizers_vis.data.datamodule import ImageDataModule
from tokenizers_vis.training.cli import SetupError, VistokCLI
from tokenizers_vis.training.system import TokenizerSystem


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with warnings.catch_warnings():
            # `vistok train` is a subcommand, so sys.argv also holds "train": LightningCLI warns
            # that args and sys.argv differ, which is intended here. sys.argv itself must stay
            # as it is, because DDP relaunches the rank processes from it.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            VistokCLI(
                TokenizerSystem,
                ImageDataModule,
                args=argv,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"prog": "vistok train"},
            )
    except SetupError as err:
        print(f"vistok train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
