"""A resumable, on-disk store of per-batch results (features, per-image metrics) of a long pass.

A streaming evaluation writes each batch's tensors as soon as they exist, one safetensors file
per batch, atomically. A run that is interrupted (Ctrl-C, SIGTERM, a crash, a full disk) and
started again with the same inputs finds those files and computes only the batches that are
missing; since a batch is always the same range of inputs, the final numbers are the same as an
uninterrupted run's. The folder is named by a digest of everything that determines the results
(the input files' names, sizes and times, the protocol, the extractor's sha1, the model's
weights, the token counts, the seed, the batch size), so a changed input never hits; the key
itself is stored beside the batches and checked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from tokenizers_vis.atomic import atomic_write, atomic_write_with

__all__ = ["BatchCache"]


class BatchCache:
    """Per-batch tensors under ``root / <digest of key>``; ``root=None`` disables it.

    Args:
        root: the cache folder (e.g. ``cache_dir("eval_features")``), or None.
        key: JSON-able description of everything the results depend on.
    """

    def __init__(self, root: str | Path | None, key: dict) -> None:
        self.key = json.dumps(key, sort_keys=True)
        self.dir = None
        self.hits = 0
        if root is not None:
            digest = hashlib.sha256(self.key.encode()).hexdigest()[:24]
            self.dir = Path(root) / digest
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                key_file = self.dir / "key.json"
                if not key_file.is_file():
                    atomic_write(key_file, self.key.encode())
                elif key_file.read_text() != self.key:  # a digest collision: use no cache
                    self.dir = None
            except OSError:  # a read-only cache only costs time
                self.dir = None

    def _path(self, index: int) -> Path:
        return self.dir / f"batch_{index:07d}.safetensors"

    def get(self, index: int) -> tuple[dict[str, Tensor], list] | None:
        """A stored batch: (name -> tensor, its failed files), or None (missing or unreadable)."""
        if self.dir is None or not self._path(index).is_file():
            return None
        try:
            with safe_open(str(self._path(index)), framework="pt") as f:
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
                failed = json.loads((f.metadata() or {}).get("failed", "[]"))
        except (OSError, ValueError, RuntimeError):  # e.g. a file from another version: redo
            return None
        self.hits += 1
        return tensors, failed

    def put(self, index: int, tensors: dict[str, Tensor], failed: list) -> None:
        """Store a batch atomically (a reader sees all of it or nothing)."""
        if self.dir is None:
            return
        contiguous = {name: t.contiguous() for name, t in tensors.items()}
        metadata = {"failed": json.dumps(failed)}
        try:
            atomic_write_with(
                self._path(index), lambda tmp: save_file(contiguous, str(tmp), metadata=metadata)
            )
        except OSError:
            pass

    def stored(self) -> int:
        """How many batches are on disk."""
        return 0 if self.dir is None else len(list(self.dir.glob("batch_*.safetensors")))
