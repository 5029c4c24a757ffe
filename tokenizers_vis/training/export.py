"""A training checkpoint -> a pretrained directory (`vistok export CKPT OUT_DIR` calls `export`).

Lightning checkpoints are for resuming; a pretrained directory (config.json + model.safetensors) is
what users load. This is the one place that unwraps training wrappers: EMA (Lightning's weight
averaging stores the averaged weights as `state_dict`), `torch.compile` (`_orig_mod.`) and DDP
(`module.`) prefixes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tokenizers_vis.errors import VistokError
from tokenizers_vis.hub import PretrainedError, read_config
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.tokenizer import Tokenizer

WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(VistokError):
    """A file that is not an exportable training checkpoint (unreadable, another kind of run, or
    weights that do not match its spec); nothing was written."""


def read_checkpoint(ckpt: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents, loaded as data (`weights_only`: nothing in the file gets
    to run code here); CheckpointError for a file that is not one."""
    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:
        # Only the user's file is parsed here, and what the weights-only unpickler raises on
        # arbitrary bytes is open-ended (UnpicklingError, RuntimeError, EOFError, even an
        # IndexError on a text file): each means "not a checkpoint".
        raise CheckpointError(
            f"{ckpt} is not a readable Lightning checkpoint ({err!s:.200})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{ckpt} is not a Lightning checkpoint (not a dict)")
    return checkpoint


def submodule_state(state_dict: dict[str, Any], prefix: str = "tokenizer.") -> dict[str, Any]:
    """Keep `prefix`-ed entries (a system's "tokenizer." or "gpt."), strip the prefix and any
    torch.compile / DDP wrapper prefixes around it: the one place that unwraps them."""
    out = {}
    for key, value in state_dict.items():
        for wrapper in WRAPPER_PREFIXES:
            key = key.replace(wrapper, "")
        if key.startswith(prefix):
            out[key[len(prefix) :]] = value
    return out


def export(ckpt: str | Path, out_dir: str | Path, weights: str = "ema") -> Path:
    """Write the tokenizer inside `ckpt` as a pretrained directory and return its path.

    Args:
        ckpt: Lightning checkpoint of a TokenizerSystem run.
        out_dir: destination directory.
        weights: "ema" (averaged weights, when the run used EMA) or "raw" (the optimizer's weights).
    """
    checkpoint = read_checkpoint(ckpt)
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"{ckpt} is not a Lightning checkpoint (no state_dict)")
    hparams = checkpoint.get("hyper_parameters", {})
    spec = hparams.get("tokenizer")
    if spec is None:
        raise CheckpointError(
            f"{ckpt} has no tokenizer hyper-parameters; is it a TokenizerSystem run?"
        )
    try:
        spec = preset_spec(spec) if isinstance(spec, str) else spec
    except KeyError as err:  # a preset this version does not have
        raise CheckpointError(f"{ckpt}: {err.args[0] if err.args else err}") from None
    has_ema = "current_model_state" in checkpoint
    if weights == "raw" and has_ema:
        state = submodule_state(checkpoint["current_model_state"])
    else:
        state = submodule_state(checkpoint["state_dict"])
    if has_ema and weights == "ema":
        state = frozen_parts_exact(state, submodule_state(checkpoint["current_model_state"]),
                                   hparams.get("freeze") or ())  # fmt: skip
    model = Tokenizer(**spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # missing / unexpected / wrongly shaped tensors
        raise CheckpointError(f"{ckpt}: weights do not match its spec ({err!s:.300})") from None
    extra = {
        "source_checkpoint": Path(ckpt).name,
        "global_step": checkpoint.get("global_step"),
        "epoch": checkpoint.get("epoch"),
        "weights": "ema" if has_ema and weights == "ema" else "raw",
        **lineage(hparams.get("init_from"), checkpoint.get("global_step")),
    }
    return model.save_pretrained(out_dir, extra=extra)


def frozen_parts_exact(
    averaged: dict[str, Any], current: dict[str, Any], frozen: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """The averaged state with every frozen part's entries taken from the live weights.

    The EMA update `decay * avg + (1 - decay) * p` rounds, so the average of a weight that never
    changes drifts from it (~1e-5 after a few hundred steps, seen on a decoder-only run): enough
    to change ids, and a decoder trained on a frozen tokenizer's tokens must encode exactly as
    that tokenizer does.
    """
    prefixes = tuple(f"{part}." for part in frozen)
    return {
        key: current[key] if key.startswith(prefixes) and key in current else value
        for key, value in averaged.items()
    }


def lineage(init_from: str | None, global_step: int | None) -> dict[str, Any]:
    """Where a warm-started run's weights came from, and the optimizer steps behind them all.

    Read before anything is written: exporting over the very directory a run started from (the
    shipped model, carried on across sessions) must still count that directory's steps.
    """
    if not init_from:
        return {}
    out: dict[str, Any] = {"init_from": str(init_from)}
    try:
        prior = read_config(init_from).get("extra", {})
    except PretrainedError:
        return out  # moved or deleted since training: the name is all we know
    before = prior.get("total_steps", prior.get("global_step"))
    if isinstance(before, int) and isinstance(global_step, int):
        out["total_steps"] = before + global_step
    return out
