"""Pretrained directories: `config.json` (format version, library version, the spec) +
`model.safetensors`.

Loading never unpickles and never builds a class named in a file: the config holds a spec of
registered names, the weights are plain tensors, and loading is strict.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_model, save_model

if TYPE_CHECKING:
    from tokenizers_vis.tokenizer import Tokenizer

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHIPPED_DIR = Path(__file__).parent / "pretrained"


class PretrainedError(ValueError):
    """A pretrained directory is missing, incomplete or from an incompatible format."""


def library_version() -> str:
    from tokenizers_vis import __version__

    return __version__


def list_pretrained() -> list[str]:
    """Names of the pretrained tokenizers shipped inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def resolve(name_or_dir: str | Path) -> Path:
    """A local directory wins; otherwise a shipped model's name."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    shipped = SHIPPED_DIR / str(name_or_dir)
    if str(name_or_dir) in list_pretrained():
        return shipped
    known = ", ".join(list_pretrained()) or "(none)"
    raise PretrainedError(
        f"{name_or_dir!s} is neither a directory nor a shipped model; shipped: {known}"
    )


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(
    model: Tokenizer, directory: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write `config.json` and `model.safetensors`, each atomically; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "library": "vistok",
        "library_version": library_version(),
        "tokenizer": model.config,
        **({"extra": extra} if extra else {}),
    }
    _atomic_write(directory / WEIGHTS_NAME, lambda p: save_model(model, p, {"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(text))
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """Parse and validate `config.json` of a pretrained directory."""
    path = resolve(directory) / CONFIG_NAME
    if not path.is_file():
        raise PretrainedError(f"{path} is missing")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PretrainedError(f"{path} is not valid JSON: {err}") from err
    version = config.get("format_version") if isinstance(config, dict) else None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PretrainedError(
            f"{path}: format_version {version!r} is not supported "
            f"(this vistok reads <= {FORMAT_VERSION})"
        )
    if not isinstance(config.get("tokenizer"), dict):
        raise PretrainedError(f"{path} has no 'tokenizer' spec")
    return config


def load_pretrained(
    cls: type[Tokenizer], name_or_dir: str | Path, map_location: str | torch.device = "cpu"
) -> Tokenizer:
    """Build the tokenizer from its spec and load weights strictly."""
    directory = resolve(name_or_dir)
    spec = read_config(directory)["tokenizer"]
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise PretrainedError(f"{weights} is missing")
    try:
        model = cls(**spec)
    except (TypeError, KeyError, ValueError) as err:
        raise PretrainedError(f"{directory / CONFIG_NAME}: invalid tokenizer spec: {err}") from err
    try:
        missing, unexpected = load_model(model, weights, strict=False, device=str(map_location))
    except RuntimeError as err:  # shape mismatches
        raise PretrainedError(f"{weights} does not match its config: {err}") from err
    if missing or unexpected:
        raise PretrainedError(
            f"{weights} does not match its config: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return model.to(map_location).eval()
