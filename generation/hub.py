"""Pretrained GPT directories: `config.json` (format version, `"kind": "gpt"`, the GPT spec) +
`model.safetensors`, written and read by `tokenizers_vis.hub` exactly as a tokenizer's are.

So a GPT gets the same guarantees: strict loading, no unpickling, no class named in a file, the
spec checked against the weights' header on the meta device before anything is allocated, and
every failure one `PretrainedError` naming the file. `"kind"` tells a reader which model a
directory holds: the codec will resolve entropy models by it, and a tokenizer loader never
mistakes a GPT for a tokenizer (it finds no `"tokenizer"` spec).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tokenizers_vis import hub
from tokenizers_vis.hub import PretrainedError

if TYPE_CHECKING:
    from generation.gpt import GPT

KIND = "gpt"
SHIPPED_DIR = Path(__file__).parent / "pretrained"
__all__ = [
    "KIND",
    "PretrainedError",
    "list_pretrained",
    "load_pretrained",
    "read_config",
    "resolve",
    "save_pretrained",
]


def list_pretrained() -> list[str]:
    """Names of the GPTs shipped inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / hub.CONFIG_NAME).is_file())


def resolve(name_or_dir: str | Path) -> Path:
    """A local directory wins; otherwise a shipped GPT's name."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir() or str(name_or_dir) not in list_pretrained():
        return path  # a missing path is reported by the loader, naming it
    return SHIPPED_DIR / str(name_or_dir)


def save_pretrained(gpt: GPT, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` then `config.json`, each atomically; returns the directory.

    `extra` holds provenance, e.g. `{"tokenizer": "emoji32", "global_step": 5000}`; `vistok
    sample` uses `extra["tokenizer"]` when no --tokenizer is given.
    """
    return hub.save_pretrained(gpt, directory, extra, kind=KIND)


def read_config(directory: str | Path) -> dict[str, Any]:
    """Parse and validate `config.json` of a pretrained GPT directory."""
    return hub.read_config(resolve(directory), kind=KIND)


def load_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> GPT:
    """Build the GPT from its spec and load its weights strictly; returned in eval mode."""
    from generation.gpt import GPT

    return hub.load_pretrained(GPT, resolve(directory), map_location, kind=KIND)
