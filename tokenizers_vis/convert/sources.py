"""Reading published checkpoints as they are published, and nothing that could run code.

A source is a safetensors file, or a PyTorch file that `torch.load(weights_only=True,
map_location="cpu")` reads: the restricted unpickler of PyTorch, which refuses every global
outside tensors and plain containers, so a file whose pickle would call a function is refused
before anything runs. What it holds must be a plain mapping of names to tensors, or one nested
under "state_dict" / "model" (training scripts save both shapes); anything else is refused with
the key that is not a tensor.

A source may also be named by a directory (a downloaded hub repository: the checkpoint inside it
is found by the names the publishers use) or by a Hugging Face repository id, found in the local
cache only (`tokenizers_vis.hub_cache`).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tokenizers_vis.convert.base import ConversionError
from tokenizers_vis.hub_cache import cached_repo
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits, check_limit
from tokenizers_vis.safe_read import read_json

__all__ = ["Source", "find_checkpoint", "read_config", "read_source", "read_tensors", "sha256"]

# Checkpoint names inside a published directory, in order of preference: huggingface_hub's
# PyTorchModelHubMixin writes model.safetensors (TiTok, FlexTok repos), older uploads
# pytorch_model.bin (TiTok's training checkpoints, One-D-Piece's EMA model).
CHECKPOINT_NAMES = ("model.safetensors", "pytorch_model.bin", "diffusion_pytorch_model.safetensors")
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
CONFIG_NAME = "config.json"
# Training scripts wrap the state dict in one of these keys.
NESTING_KEYS = ("state_dict", "model")
_SAFETENSORS_MAX_HEADER = 100 * 2**20


@dataclass(frozen=True)
class Source:
    """One source file and where it came from.

    Attributes:
        path: the file read.
        repo: "owner/name" when it was found in the Hugging Face cache, else None.
        revision: the cached snapshot's commit when `repo` is set.
    """

    path: Path
    repo: str | None = None
    revision: str | None = None

    def describe(self) -> dict[str, Any]:
        """What the converted model records about this file (no local paths: a converted
        directory may be published)."""
        info: dict[str, Any] = {"file": self.path.name, "sha256": sha256(self.path)}
        if self.repo:
            info.update(repo=self.repo, revision=self.revision)
        return info


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path, what: str) -> None:
    """Refuse a missing path and anything but a regular file (a FIFO would block forever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise ConversionError(f"{what} {path}: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConversionError(f"{what} {path} is not a regular file")


def find_checkpoint(directory: Path, what: str) -> Path:
    """The checkpoint inside a published directory: a known name, else the only candidate."""
    for name in CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    found = sorted(
        p for p in directory.iterdir() if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES)
    )
    if len(found) == 1:
        return found[0]
    names = ", ".join(p.name for p in found) or "none"
    raise ConversionError(
        f"{what} {directory} is a directory without one checkpoint to read (found: {names}); "
        f"name the file itself"
    )


def read_source(name: str | os.PathLike, what: str) -> Source:
    """Resolve a source named by a file, a directory or a cached hub repository id.

    A local path wins; a name that is no local path but reads as "owner/name" is looked up in
    the Hugging Face cache (never downloaded).
    """
    path = Path(name).expanduser()
    repo = revision = None
    if not os.path.lexists(path):
        snapshot = cached_repo(str(name), error=ConversionError)
        if snapshot is None:
            raise ConversionError(f"{what} {path} does not exist")
        path, repo, revision = snapshot, str(name).split("@")[0], snapshot.name
    if path.is_dir():
        path = find_checkpoint(path, what)
    _check_file(path, what)
    return Source(path, repo, revision)


def _is_safetensors(head: bytes) -> bool:
    """A safetensors file starts with an 8-byte little-endian header size, then a JSON '{'."""
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= size <= _SAFETENSORS_MAX_HEADER


def _is_torch(head: bytes) -> bool:
    """torch.save writes a zip archive (PyTorch >= 1.6) or, before, a pickle (protocol opcode)."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _load(path: Path, what: str, limits: Limits) -> Any:
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise ConversionError(f"{what} {path} is empty")
    if _is_safetensors(head):
        from safetensors.torch import load_file

        from tokenizers_vis.safetensors_header import read_header

        try:  # header size, tensor count, parameters and offsets, before any tensor is read
            read_header(path, limits, ConversionError)
        except ConversionError as err:
            raise ConversionError(f"{what} {err}") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # SafetensorError: truncated, bad header, bad offsets ...
            raise ConversionError(
                f"{what} {path} is a damaged safetensors file: {_reason(err)}"
            ) from None
    if not _is_torch(head):
        raise ConversionError(
            f"{what} {path} is neither a safetensors file nor a PyTorch file "
            f"(it starts with {head[:8]!r})"
        )
    try:
        # mmap (zip files only): a multi-gigabyte checkpoint is paged in, not copied whole.
        mmap = head.startswith(b"PK\x03\x04")
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # UnpicklingError (a forbidden global), a truncated zip, EOF ...
        raise ConversionError(
            f"{what} {path} is not a PyTorch state dict that loads without running code "
            f"(torch.load weights_only): {_reason(err)}"
        ) from None


def _reason(err: BaseException) -> str:
    """The useful part of a loader's error, on one line. PyTorch's weights_only refusal is a
    page that suggests loading the file unsafely: only the global it refused is kept."""
    text = str(err)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return f"it refers to {refused[1]}, which no plain state dict holds (nothing was run)"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    detail = lines[0][:200] if lines else type(err).__name__
    return f"truncated or damaged ({type(err).__name__}: {detail})"


def _unwrap(data: Any) -> Any:
    """The state dict inside {"state_dict": {...}} / {"model": {...}}, else `data` itself."""
    if isinstance(data, dict) and not all(isinstance(v, Tensor) for v in data.values()):
        for key in NESTING_KEYS:
            if isinstance(data.get(key), dict):
                return data[key]
    return data


def read_tensors(path: Path, what: str, limits: Limits = DEFAULT_LIMITS) -> dict[str, Tensor]:
    """The file's tensors by name (CPU), or a ConversionError naming the file and the fault.

    A safetensors file's header is checked against `limits` (header size, tensor count,
    parameters) before any tensor is read; a PyTorch file's counts once it is mapped.

    Raises:
        ConversionError: unreadable, damaged, not loadable without running code, not a mapping,
            or a key that is not a string or a value that is not a tensor.
        LimitError: a header, tensor count or parameter count above `limits`.
    """
    data = _unwrap(_load(path, what, limits))
    if not isinstance(data, dict):
        raise ConversionError(
            f"{what} {path} holds a {type(data).__name__}, not a state dict (names -> tensors)"
        )
    bad = [(k, v) for k, v in data.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        key, value = bad[0]
        raise ConversionError(
            f"{what} {path} is not a plain state dict: {len(bad)} entries are not name -> "
            f"tensor, e.g. {key!r} -> {type(value).__name__}"
        )
    if not data:
        raise ConversionError(f"{what} {path} holds no tensors")
    # A PyTorch file has no header to check first; mapped (zip) or loaded, its counts are checked
    # before any conversion works on its tensors. (A safetensors file was checked above.)
    check_limit(path, "tensors", len(data), limits, "max_tensors")
    check_limit(path, "parameters", sum(t.numel() for t in data.values()), limits, "max_parameters")
    return data


def read_config(
    path: Path | None, what: str = "config", limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any] | None:
    """Parse a published config.json (a JSON object, within `limits`) or return None for no
    file."""
    if path is None:
        return None
    _check_file(path, what)
    try:
        config = read_json(path, limits, ConversionError)  # bounded: size, UTF-8, nesting
    except ConversionError as err:
        raise ConversionError(f"{what} {err}") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{what} {path} holds a JSON {type(config).__name__}, not an object")
    return config
