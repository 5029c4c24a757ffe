"""The LightningCLI that vistok's training commands share (tokenizers here, GPTs in `generation`).

- Precision fits the machine: a top-level `precision: auto | bf16 | fp32` (default auto) picks
  `trainer.precision` from what the hardware runs natively (`tokenizers_vis.precision`): bf16
  autocast on GPUs and on CPUs with AVX512-BF16 / AMX, fp32 elsewhere, where emulated bf16 made
  a training step 19x slower. An explicit `--trainer.precision` always wins. The choice and its
  reason are printed at start-up.
- Checkpoints go to `<default_root_dir>/checkpoints`, so `--ckpt_path last` finds them from a new
  process, and carry the run's random generators (`RandomState`), so a resumed run continues
  their streams instead of redrawing its first steps' crops and prefix lengths.
- Setup mistakes (unknown preset, bad component argument, missing pretrained directory) become a
  `SetupError` (a `VistokError`): one line and exit status 2 in the command, not a traceback.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from tokenizers_vis.errors import VistokError
from tokenizers_vis.precision import PRECISIONS, lightning_precision
from tokenizers_vis.training.random_state import RandomState


class SetupError(VistokError):
    """A run could not be set up from its configuration: the user's mistake, not a bug."""


class VistokCLI(LightningCLI):
    """LightningCLI with machine-fitted precision and checkpoints in a fixed folder."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--precision",
            default="auto",
            choices=list(PRECISIONS),
            help="auto: bf16 where the hardware runs it natively, else fp32 "
            "(an explicit --trainer.precision overrides this)",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config["trainer"]
        if trainer.get("precision") is not None:
            message = f"trainer.precision {trainer['precision']} (set explicitly)"
        else:
            accelerator = trainer.get("accelerator") or "auto"
            if not isinstance(accelerator, str):  # an Accelerator object: ask its device type
                accelerator = "cuda" if "CUDA" in type(accelerator).__name__ else "cpu"
            resolved, reason = lightning_precision(config.get("precision", "auto"), accelerator)
            trainer["precision"] = resolved
            message = f"trainer.precision {resolved} ({reason})"
        print(f"[vistok] {message}", file=sys.stderr)

    def before_fit(self) -> None:
        # Lightning's default puts checkpoints under the logger's `version_N/`: a new process
        # (`version_N+1`) would not find `last.ckpt` and `--ckpt_path last` would start over.
        for callback in self.trainer.checkpoint_callbacks:
            if getattr(callback, "dirpath", "") is None:
                callback.dirpath = str(Path(self.trainer.default_root_dir) / "checkpoints")
        # Every run carries its generators across a resume (see `random_state`).
        if not any(isinstance(c, RandomState) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(RandomState())

    before_validate = before_fit

    def instantiate_classes(self) -> None:
        # Unknown presets / data specs, bad component arguments and missing pretrained
        # directories surface here; anything raised later, while training, stays a traceback.
        try:
            super().instantiate_classes()
        except (KeyError, ValueError, FileNotFoundError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise SetupError(str(message)) from err


def run_cli(cli: type[VistokCLI], model: type, datamodule: type, argv: list[str], prog: str) -> int:
    """Run a `vistok` training command (the body a command's `main` gives `cli.common.run`, which
    turns a `SetupError` into one line and exit status 2)."""
    with warnings.catch_warnings():
        # A subcommand of `vistok`: sys.argv also holds the command's name, so LightningCLI
        # warns that args and sys.argv differ, which is intended. sys.argv itself must stay
        # as it is, because DDP relaunches the rank processes from it.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli(
            model,
            datamodule,
            args=argv,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": prog},
        )
    return 0
