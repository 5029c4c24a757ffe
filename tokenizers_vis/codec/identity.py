"""The tokenizer identity stored in every .vtok header: which exact model wrote the ids.

For a pretrained directory it is the first 8 bytes of SHA-256 over `config.json`'s bytes
followed by `model.safetensors`'s bytes, so any tool reproduces it:

    cat DIR/config.json DIR/model.safetensors | sha256sum | cut -c1-16

Hashing 18 MB takes tens of milliseconds, so the value is cached per directory (keyed by the
files' sizes and modification times: a re-exported model gets a new identity). Any change to
the weights or the config, even to its metadata, changes the identity: decoding is refused
rather than silently producing another model's images.

The files are hashed only after the checks loading makes of them (`Tokenizer.open_pretrained`:
the config parses and holds a tokenizer spec, both are regular files), and a `PretrainedDir`
already checked is taken as it is: a name is resolved once per use, never again here.

A tokenizer that only lives in memory (never saved) gets a hash of its spec and tensors
instead; files it writes decode only with those same weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from tokenizers_vis.codec.format import ID_BYTES
from tokenizers_vis.hub import PretrainedDir, PretrainedError
from tokenizers_vis.safe_read import open_regular
from tokenizers_vis.tokenizer import Tokenizer

__all__ = ["directory_identity", "model_identity", "shipped_identities"]


@functools.lru_cache(maxsize=64)
def sha256_files(
    paths: tuple[str, ...],
    stamps: tuple[tuple[int, int], ...],
    within: str | None = None,
    error: type[Exception] = PretrainedError,
) -> bytes:
    """SHA-256 of the files' bytes in order; `stamps` (size, mtime_ns) per file are part of the
    cache key only, so a rewritten file gets a new digest. Each file is opened as loading opens
    it (`safe_read.open_regular`: a regular file, inside `within`), so a file swapped for a FIFO
    or `/dev/zero` since it was checked is refused, never read forever."""
    del stamps
    digest = hashlib.sha256()
    for path in paths:
        with open_regular(path, error, within) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.digest()


def directory_identity(source: str | os.PathLike | PretrainedDir) -> bytes:
    """8-byte identity of a pretrained tokenizer directory, a shipped model's name, or a
    `PretrainedDir` from `Tokenizer.open_pretrained` (not resolved or checked again).

    Raises:
        PretrainedError: the name or files fail the checks loading makes.
    """
    found = Tokenizer.open_pretrained(source)
    paths = (str(found.config_path), str(found.weights_path))
    try:
        stamps = tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    except OSError as err:  # removed since it was checked
        raise PretrainedError(f"{found.path}: {err.strerror}: {err.filename}") from None
    return sha256_files(paths, stamps, str(found.within))[:ID_BYTES]


def module_digest(module: torch.nn.Module, tag: bytes) -> bytes:
    """SHA-256 of an unsaved module: `tag`, its `config` spec and every tensor's name, dtype,
    shape and bytes (the same weights give the same digest on any machine)."""
    digest = hashlib.sha256(tag)
    digest.update(json.dumps(module.config, sort_keys=True).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


def model_identity(tokenizer: Tokenizer) -> bytes:
    """8-byte identity of an in-memory tokenizer: its spec and every tensor's bytes."""
    return module_digest(tokenizer, b"vistok-unsaved-model\0")[:ID_BYTES]


def shipped_identities() -> dict[bytes, str]:
    """{identity: name} of the models shipped inside the package."""
    out = {}
    for name in Tokenizer.list_pretrained():
        try:
            out[directory_identity(name)] = name
        except PretrainedError:
            continue
    return out


def find_shipped(identity: bytes) -> Path | None:
    """The shipped model directory with this identity, if there is one."""
    name = shipped_identities().get(identity)
    return None if name is None else Tokenizer.shipped_dir / name
