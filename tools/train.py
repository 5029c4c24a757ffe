"""`vistok train fit|validate --config a.yaml --config b.yaml ...`: LightningCLI for tokenizers.

Configs compose: `configs/tokenizer/*.yaml` (model), `configs/data/*.yaml`,
`configs/trainer/*.yaml`. Resume a killed run with `--ckpt_path last`.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from tokenizers_vis.data.datamodule import ImageDataModule
from tokenizers_vis.training.system import TokenizerSystem


class SetupError(Exception):
    """A run could not be set up from its configuration: the user's mistake, not a bug."""


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

    def instantiate_classes(self) -> None:
        # Unknown presets / data specs, bad component arguments and missing pretrained
        # directories surface here; anything raised later, while training, stays a traceback.
        try:
            super().instantiate_classes()
        except (KeyError, ValueError, FileNotFoundError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise SetupError(str(message)) from err


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
