"""Pretrained GPT directories: `config.json` (format version, kind, the GPT spec) +
`model.safetensors`, the same layout as a tokenizer's (`tokenizers_vis.hub`).

`"kind": "gpt"` tells a reader which model a directory holds: the codec will resolve entropy
models by it, and a tokenizer loader never mistakes a GPT for a tokenizer (it finds no
`"tokenizer"` spec). Loading never unpickles and never builds a class named in a file, and it is
strict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_model, save_model

from tokenizers_vis import __version__
from tokenizers_vis.atomic import atomic_write, atomic_write_with

if TYPE_CHECKING:
    from generation.gpt import GPT

FORMAT_VERSION = 1
KIND = "gpt"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class PretrainedError(ValueError):
    """A pretrained GPT directory is missing, incomplete or of another kind or format."""


def save_pretrained(gpt: GPT, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` then `config.json`, each atomically; returns the directory.

    `extra` holds provenance, e.g. `{"tokenizer": "emoji32", "global_step": 5000}`; `vistok
    sample` uses `extra["tokenizer"]` when no --tokenizer is given.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "library": "vistok",
        "library_version": __version__,
        "gpt": gpt.config,
        **({"extra": extra} if extra else {}),
    }
    atomic_write_with(directory / WEIGHTS_NAME, lambda p: save_model(gpt, str(p), {"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / CONFIG_NAME, text.encode())
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """Parse and validate `config.json` of a pretrained GPT directory."""
    path = Path(directory).expanduser() / CONFIG_NAME
    if not path.is_file():
        raise PretrainedError(f"{path} is missing (not a pretrained GPT directory)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PretrainedError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or config.get("kind") != KIND:
        kind = config.get("kind", "tokenizer?") if isinstance(config, dict) else None
        raise PretrainedError(f"{path} holds a {kind!r} model, not a GPT")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PretrainedError(
            f"{path}: format_version {version!r} is not supported (this vistok reads "
            f"<= {FORMAT_VERSION})"
        )
    if not isinstance(config.get("gpt"), dict):
        raise PretrainedError(f"{path} has no 'gpt' spec")
    return config


def load_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> GPT:
    """Build the GPT from its spec and load its weights strictly; returned in eval mode."""
    from generation.gpt import GPT

    directory = Path(directory).expanduser()
    spec = read_config(directory)["gpt"]
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise PretrainedError(f"{weights} is missing")
    try:
        model = GPT(**spec)
    except (TypeError, ValueError) as err:
        raise PretrainedError(f"{directory / CONFIG_NAME}: invalid GPT spec: {err}") from err
    try:
        missing, unexpected = load_model(model, weights, strict=False, device=str(map_location))
    except Exception as err:  # shape mismatches, truncated or foreign files (SafetensorError)
        raise PretrainedError(f"{weights} does not match its config: {err!s:.300}") from err
    if missing or unexpected:
        raise PretrainedError(
            f"{weights} does not match its config: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return model.to(map_location).eval()
