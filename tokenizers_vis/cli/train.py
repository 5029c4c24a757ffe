"""`vistok train fit|validate --config a.yaml --config b.yaml ...`: LightningCLI for tokenizers.

Configs compose: `configs/tokenizer/*.yaml` (model), `configs/data/*.yaml`,
`configs/trainer/*.yaml`. Resume a killed run with `--ckpt_path last`. `--precision auto` (the
default) trains in bf16 only where the hardware runs it natively; see
`tokenizers_vis.training.cli`.
"""

from __future__ import annotations

import sys

from tokenizers_vis.cli.common import run
from tokenizers_vis.data.datamodule import ImageDataModule
from tokenizers_vis.training.cli import SetupError, VistokCLI, run_cli  # noqa: F401 (re-exported)
from tokenizers_vis.training.system import TokenizerSystem


def main(argv: list[str] | None = None) -> int:
    """Run `vistok train ...`; returns the exit status (2 for setup mistakes)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "vistok train"
    return run(lambda: run_cli(VistokCLI, TokenizerSystem, ImageDataModule, argv, prog), prog)


if __name__ == "__main__":
    raise SystemExit(main())
