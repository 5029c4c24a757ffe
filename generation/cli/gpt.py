"""train a GPT on pretokenized shards (LightningCLI: fit / validate) or export one

    vistok gpt fit --config configs/gpt/emoji.yaml [--trainer.max_steps N] [--precision auto]
    vistok gpt validate --config configs/gpt/emoji.yaml --ckpt_path last
    vistok gpt export CKPT OUT_DIR [--weights ema|raw]

The GPT's vocabularies, K and classes come from the shards (`data.root`), linked into
`model.data_info`; a config names only the architecture. `--precision auto` (the default) trains
in bf16 where the hardware runs it natively and in fp32 elsewhere. Resume with `--ckpt_path last`.
`export` turns a Lightning checkpoint (for resuming only) into a pretrained GPT directory
(config.json + model.safetensors), the EMA weights when the run averaged them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser

from generation.data import TokenDataModule
from generation.gpt import GPT
from generation.system import GPTSystem
from tokenizers_vis.cli.common import ArgumentParser, run
from tokenizers_vis.errors import UsageError
from tokenizers_vis.training.cli import VistokCLI, run_cli
from tokenizers_vis.training.export import CheckpointError, read_checkpoint, submodule_state


class GPTCLI(VistokCLI):
    """VistokCLI whose model is built from the data's vocabularies, K and classes."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.info", "model.data_info", apply_on="instantiate")


def export(ckpt: str | Path, out_dir: str | Path, weights: str = "ema") -> Path:
    """Write the GPT inside a GPTSystem checkpoint as a pretrained directory; returns its path.

    Args:
        ckpt: Lightning checkpoint of a `vistok gpt fit` run.
        out_dir: destination directory.
        weights: "ema" (averaged weights, when the run used EMA) or "raw" (the optimizer's).
    """
    checkpoint = read_checkpoint(ckpt)
    if not isinstance(checkpoint.get("gpt_spec"), dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{ckpt} has no GPT spec; is it a `vistok gpt fit` checkpoint?")
    has_ema = "current_model_state" in checkpoint
    state = checkpoint["current_model_state" if weights == "raw" and has_ema else "state_dict"]
    model = GPT(**checkpoint["gpt_spec"])
    try:
        model.load_state_dict(submodule_state(state, prefix="gpt."), strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{ckpt}: weights do not match its GPT spec ({err!s:.300})") from err
    extra = {
        "source_checkpoint": Path(ckpt).name,
        "global_step": checkpoint.get("global_step"),
        "epoch": checkpoint.get("epoch"),
        "weights": "ema" if has_ema and weights == "ema" else "raw",
        "tokenizer": checkpoint.get("tokenizer"),
    }
    return model.save_pretrained(out_dir, extra={k: v for k, v in extra.items() if v is not None})


def export_main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="vistok gpt export", description="a GPT training checkpoint -> a pretrained directory"
    )
    parser.add_argument("ckpt", type=Path, help="Lightning checkpoint (.ckpt)")
    parser.add_argument("out_dir", type=Path, help="pretrained directory to write")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema")
    args = parser.parse_args(argv)
    if not args.ckpt.is_file():
        raise UsageError(f"{args.ckpt} is not a file")
    out = export(args.ckpt, args.out_dir, args.weights)  # CheckpointError: one line from `run`
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `vistok gpt ...`; returns the exit status (2 for user mistakes)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "export":
        return run(lambda: export_main(argv[1:]), "vistok gpt export", writes=True)
    return run(
        lambda: run_cli(GPTCLI, GPTSystem, TokenDataModule, argv, "vistok gpt"), "vistok gpt"
    )


if __name__ == "__main__":
    raise SystemExit(main())
