"""The static entropy model: per-position, per-sub-codebook frequency tables (payload coding 1).

Token t's sub-id j gets probability `(count[j][t, id] + a) / sum_id (count[j][t, id] + a)`, with
counts taken on a training split and add-a smoothing (a = 1: Laplace), whatever came before it.
Coarse-to-fine tokens are far from uniform per position (the first tokens settle the layout, so a
few codes dominate), which is most of what a context-free model can use; the GPT (coding 2)
adds the context.

Stored beside a tokenizer (its pretrained directory) or anywhere:

    entropy_static.safetensors   counts.0 .. counts.{g-1}: (K, V_j) int32; metadata smoothing
    entropy_static.json          {"kind": "static", "vocab_sizes", "max_tokens", "tokenizer_id",
                                  "fit": what it was fitted on and its bits per token}

Everything that sets the probabilities is in the safetensors file, so the table's identity is
the first 4 bytes of its SHA-256 (`sha256sum entropy_static.safetensors | cut -c1-8`): editing
the JSON's notes keeps old files decodable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import safe_open

from tokenizers_vis.atomic import OutputExistsError, atomic_write
from tokenizers_vis.codec.entropy import (
    MODEL_ID_BYTES,
    STATIC_CONFIG,
    EntropyModel,
    EntropyModelLoadError,
    files_identity,
)
from tokenizers_vis.codec.format import CODING_STATIC, RANGE_PRECISION
from tokenizers_vis.hub import library_version
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits
from tokenizers_vis.safe_read import read_json
from tokenizers_vis.safetensors_header import read_header

__all__ = ["STATIC_CONFIG", "STATIC_WEIGHTS", "StaticTable", "count_ids", "load"]

STATIC_WEIGHTS = "entropy_static.safetensors"
FORMAT_VERSION = 1


def count_ids(ids: np.ndarray, vocab_sizes: Sequence[int], max_tokens: int) -> list[np.ndarray]:
    """Per sub-codebook j, how often each id occurs at each position: (K, V_j) int64.

    Args:
        ids: (b, n, g) integers, n <= K: sequences of n tokens.
    """
    ids = np.asarray(ids)
    b, n, g = ids.shape
    if g != len(vocab_sizes) or n > max_tokens:
        raise ValueError(f"ids (b, n <= {max_tokens}, {len(vocab_sizes)}), got {ids.shape}")
    out = []
    for j, v in enumerate(vocab_sizes):
        if ids[..., j].min(initial=0) < 0 or ids[..., j].max(initial=0) >= v:
            raise ValueError(f"ids of sub-codebook {j} outside 0..{v - 1}")
        flat = np.arange(n)[None, :] * v + ids[..., j]  # (b n): position-major cell index
        out.append(np.bincount(flat.ravel(), minlength=max_tokens * v).reshape(max_tokens, v))
    return out


class StaticTable(EntropyModel):
    """Per-position probabilities from counts with add-`smoothing` smoothing.

    Args:
        counts: per sub-codebook j, (K, V_j) non-negative integer counts.
        smoothing: added to every count (1 = add-one).
        tokenizer_id: the 8-byte identity of the tokenizer whose ids were counted, if known.
        info: notes for the JSON (what it was fitted on, its measured rate).
    """

    kind = "static"
    coding = CODING_STATIC

    def __init__(
        self,
        counts: Sequence[np.ndarray],
        smoothing: float = 1.0,
        tokenizer_id: bytes | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        counts = [np.asarray(c) for c in counts]
        if not counts or any(c.ndim != 2 or c.shape[0] != counts[0].shape[0] for c in counts):
            raise ValueError("counts must be one (K, V_j) array per sub-codebook")
        if any(c.min(initial=0) < 0 or not np.issubdtype(c.dtype, np.integer) for c in counts):
            raise ValueError("counts must be non-negative integers")
        if not smoothing > 0:
            raise ValueError(f"smoothing must be > 0, got {smoothing}")
        self.counts = [c.astype(np.int64) for c in counts]
        self.smoothing = float(smoothing)
        self.vocab_sizes = tuple(int(c.shape[1]) for c in counts)
        self.max_tokens = int(counts[0].shape[0])
        self.tokenizer_id, self.info = tokenizer_id, dict(info or {})
        smoothed = [c + self.smoothing for c in self.counts]  # float64, exact for counts < 2^53
        self.probs = [s / s.sum(axis=1, keepdims=True) for s in smoothed]  # (K, V_j) each
        self.identity = hashlib.sha256(self._weights_bytes()).digest()[:MODEL_ID_BYTES]

    @classmethod
    def fit(
        cls,
        batches: Iterable[np.ndarray],
        vocab_sizes: Sequence[int],
        max_tokens: int,
        smoothing: float = 1.0,
        **kwargs: Any,
    ) -> StaticTable:
        """Count batches of ids (b, n, g) into a table (kwargs as the constructor's)."""
        total = [np.zeros((max_tokens, v), dtype=np.int64) for v in vocab_sizes]
        for ids in batches:
            for acc, c in zip(total, count_ids(ids, vocab_sizes, max_tokens), strict=True):
                acc += c
        return cls(total, smoothing, **kwargs)

    # The entropy-model interface: the prefix is ignored, only its length t matters.
    def start(self, batch: int, condition: int | None = None) -> int:
        if condition is not None:
            raise ValueError("a static table is unconditional: it takes no class")
        return batch

    def next_probabilities(self, state: int, prefix: np.ndarray, sub_ids: np.ndarray) -> np.ndarray:
        t, j = prefix.shape[1], sub_ids.shape[1]
        return np.broadcast_to(self.probs[j][t], (state, self.vocab_sizes[j]))  # (b V_j)

    def min_bits(self) -> np.ndarray:
        """(K, g): the fewest bits the coder spends at each position, from the largest
        probability there (quantisation moves it by at most (V + 1) units of 2^-24)."""
        out = []
        for p in self.probs:  # (K V_j)
            v = p.shape[1]
            top = np.minimum(p.max(axis=1) + (v + 1) * 2.0**-RANGE_PRECISION, 1.0)  # (K)
            floor = 1.0 - (v - 1) * 2.0**-RANGE_PRECISION
            out.append(-np.log2(np.minimum(top, floor)))
        return np.stack(out, axis=1)  # (K g)

    def bits(self, ids: np.ndarray) -> float:
        """The ideal cost, sum of -log2 p, of ids (b, n, g), n <= K."""
        ids = np.asarray(ids)
        pos = np.arange(ids.shape[1])[None, :]  # (1 n)
        return float(-sum(np.log2(p[pos, ids[..., j]]).sum() for j, p in enumerate(self.probs)))

    # Files -------------------------------------------------------------------------------
    def _weights_bytes(self) -> bytes:
        if max(int(c.max(initial=0)) for c in self.counts) >= 2**31:
            raise ValueError("counts above 2^31 do not fit the int32 table")
        tensors = {f"counts.{j}": c.astype(np.int32) for j, c in enumerate(self.counts)}
        return safetensors.numpy.save(tensors, metadata={"smoothing": repr(self.smoothing)})

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write `entropy_static.safetensors` then `entropy_static.json` into `directory`
        (each atomically); returns the JSON's path.

        Raises:
            OutputExistsError: a table is there and `overwrite` is False.
        """
        directory = Path(directory)
        config = directory / STATIC_CONFIG
        if config.exists() and not overwrite:
            raise OutputExistsError(f"{config} exists (overwrite replaces it)")
        directory.mkdir(parents=True, exist_ok=True)
        doc = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "library": "vistok",
            "library_version": library_version(),
            "vocab_sizes": list(self.vocab_sizes),
            "max_tokens": self.max_tokens,
            "smoothing": self.smoothing,
            "tokenizer_id": self.tokenizer_id.hex() if self.tokenizer_id else None,
            "identity": self.identity.hex(),
            "fit": self.info,
        }
        atomic_write(directory / STATIC_WEIGHTS, self._weights_bytes())
        atomic_write(config, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        return config


def _read_json(path: Path, limits: Limits) -> dict[str, Any]:
    doc = read_json(path, limits, EntropyModelLoadError, within=path.parent)
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise EntropyModelLoadError(f"{path}: format_version {version!r} is not supported")
    if doc.get("kind") != StaticTable.kind:
        raise EntropyModelLoadError(f"{path} does not hold a static table")
    return doc


def shipped_path(name: str) -> Path | None:
    """A shipped tokenizer's directory when it holds a static table (`load_entropy_model`
    asks, so `--entropy-model emoji32` is that tokenizer's table), else None."""
    from tokenizers_vis.hub import SHIPPED_DIR, list_pretrained

    found = SHIPPED_DIR / name
    return found if name in list_pretrained() and (found / STATIC_CONFIG).is_file() else None


def _check_fields(doc: Any, path: Path) -> None:
    """The types `load` relies on, refused by name (a hand-edited or damaged JSON file)."""

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    problems = []
    if not isinstance(doc, dict):
        problems.append("not a JSON object")
    else:
        vocab, k, tok, fit = (
            doc.get(n) for n in ("vocab_sizes", "max_tokens", "tokenizer_id", "fit")
        )
        if not (isinstance(vocab, list) and vocab and all(whole(v) and v >= 1 for v in vocab)):
            problems.append("vocab_sizes must be a list of positive integers")
        if not (whole(k) and k >= 1):
            problems.append("max_tokens must be a positive integer")
        if tok is not None and not isinstance(tok, str):
            problems.append("tokenizer_id must be a hex string")
        if fit is not None and not isinstance(fit, dict):
            problems.append("fit must be an object")
    if problems:
        raise EntropyModelLoadError(f"{path}: {'; '.join(problems)}")


def load(directory: str | Path, limits: Limits | None = None) -> StaticTable:
    """The static table in `directory` (the `vistok.entropy_models` loader of kind "static").

    Both files are read only as regular files inside `directory`, the JSON and the weights'
    header within `limits` (default `DEFAULT_LIMITS`), before safetensors reads the tensors.

    Raises:
        EntropyModelLoadError: naming the file at fault.
        LimitError: a file larger or deeper than `limits`.
    """
    limits = limits or DEFAULT_LIMITS
    directory = Path(directory)
    if not (directory / STATIC_CONFIG).is_file():
        raise EntropyModelLoadError(
            f"{directory} has no static table ({STATIC_CONFIG}); `vistok entropy fit` makes one"
        )
    doc = _read_json(directory / STATIC_CONFIG, limits)
    _check_fields(doc, directory / STATIC_CONFIG)
    weights = directory / STATIC_WEIGHTS
    try:
        read_header(weights, limits, EntropyModelLoadError, within=directory)
    except EntropyModelLoadError as err:
        raise EntropyModelLoadError(f"not a readable table: {err}") from None
    try:
        with safe_open(str(weights), framework="np") as f:
            meta = f.metadata() or {}
        tensors = safetensors.numpy.load_file(weights)
        smoothing = float(meta["smoothing"])
    except Exception as err:  # missing, not safetensors, no smoothing ...
        raise EntropyModelLoadError(f"{weights} is not a readable table: {err}") from None
    vocab, k = doc.get("vocab_sizes"), doc.get("max_tokens")
    names = [f"counts.{j}" for j in range(len(vocab or []))]
    if sorted(tensors) != sorted(names) or any(
        tensors[n].shape != (k, v) or tensors[n].dtype != np.int32
        for n, v in zip(names, vocab, strict=True)
    ):
        shapes = {n: t.shape for n, t in tensors.items()}
        raise EntropyModelLoadError(
            f"{weights} does not match {STATIC_CONFIG} (K {k}, vocab {vocab}): it holds {shapes}"
        )
    tok = doc.get("tokenizer_id")
    try:
        table = StaticTable(
            [tensors[n] for n in names],
            smoothing,
            bytes.fromhex(tok) if tok else None,
            doc.get("fit"),
        )
    except (ValueError, KeyError) as err:  # bytes.fromhex's ValueError included
        raise EntropyModelLoadError(f"{weights}: {err}") from None
    # The file's own hash, so `sha256sum` reproduces the identity files record.
    table.identity = files_identity([weights], within=directory)
    return table
