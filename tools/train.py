"""`vistok train fit|validate --config a.yaml --config b.yaml ...`: LightningCLI for tokenizers.

Configs compose: `configs/tokenizer/*.yaml` (model), `configs/data/*.yaml`,
`configs/trainer/*.yaml`. Resume a killed run with `--ckpt_path last`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from tokenizers_vis.data.datamodule import ImageDataModule
from tokenizers_vis.training.system import TokenizerSystem


class VistokCLI(LightningCLI):
    """LightningCLI with checkpoints in `<default_root_dir>/checkpoints`.

    Lightning's default puts them under the logger's `version_N/`, so a new process (which gets
    `version_N+1`) would not find `last.ckpt` and `--ckpt_path last` would silently start over.
    """

    def before_fit(self) -> None:
        for callback in self.trainer.checkpoint_callbacks:
            if getattr(callback, "dirpath", "") is None:
                callback.dirpath = str(Path(self.trainer.default_root_dir) / "checkpoints")

    before_validate = before_fit


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    VistokCLI(
        TokenizerSystem,
        ImageDataModule,
        args=argv,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "vistok train"},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
