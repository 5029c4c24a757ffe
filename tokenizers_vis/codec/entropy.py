"""Entropy models: anything that gives next-token probabilities for a prefix of ids.

Range coding a token file (payload codings 1 and 2, `entropy_coding.py`) needs, for every id, the
probability of each value given the ids before it. Two kinds ship: the per-position frequency
table (`static_table.py`, here) and the GPT (`generation.entropy`). The codec never imports a
model's package: a directory names its kind (`"kind"` in `config.json`, or in
`entropy_static.json`) and the kind is looked up among the built-in kinds and the loaders
installed under the `vistok.entropy_models` entry-point group (name = kind, value =
"package.module:function", a function `(directory: Path) -> EntropyModel`). So `generation`
registers its GPT and `tokenizers_vis` never imports `generation`.

    model = load_entropy_model("runs/gpt/export")   # a GPT directory: kind "gpt"
    model = load_entropy_model("my_tokenizer_dir")  # its entropy_static.json: kind "static"
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tokenizers_vis.codec.format import range_floor_bits
from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits
from tokenizers_vis.safe_read import read_json

__all__ = [
    "ENTRY_POINT_GROUP",
    "MODEL_ID_BYTES",
    "STATIC_CONFIG",
    "EntropyModel",
    "EntropyModelLoadError",
    "entropy_kinds",
    "files_identity",
    "load_entropy_model",
]

ENTRY_POINT_GROUP = "vistok.entropy_models"
# Kinds this package provides itself (entry points may add others, never replace these).
BUILTIN_KINDS = {"static": "tokenizers_vis.codec.static_table:load"}
STATIC_CONFIG = "entropy_static.json"
# Files keep 4 bytes of the model's identity: it only has to tell apart the entropy models of
# one tokenizer (the file's 8-byte tokenizer id pins that), and the ids checksum stored beside
# it catches whatever a collision (2^-32) would let through. Every byte counts at ~60-byte
# payloads.
MODEL_ID_BYTES = 4


class EntropyModelLoadError(VistokError):
    """A path holds no loadable entropy model; `str(err)` says why in one line."""


class EntropyModel(abc.ABC):
    """Next-token probabilities for a prefix of ids (b, t, g): what range coding needs.

    The coder calls `start` once per group of sequences coded together, then, for t = 0, 1, ...
    and j = 0 .. g-1 in that order, `next_probabilities` for sub-id j of token t. The decoder
    makes exactly the same calls with the ids it has decoded so far, so a model must return
    bit-identical arrays for identical calls (fp32 on one code path, no randomness); where that
    fails (another machine), the ids checksum in the file refuses the result.

    Attributes:
        kind: the registry name; a directory's files declare it.
        coding: the .vtok payload coding it writes: 1 (context-free table) or 2 (a model of the
            prefix).
        identity: `MODEL_ID_BYTES` bytes naming the exact model (files record it).
        vocab_sizes: (V_1, .., V_g), as the tokenizer's.
        max_tokens: tokens per sequence it can predict (tokens 0 .. max_tokens - 1).
        class_names: the classes it can be conditioned on (empty: unconditional only).
    """

    kind: ClassVar[str]
    coding: ClassVar[int]
    identity: bytes
    vocab_sizes: tuple[int, ...]
    max_tokens: int
    class_names: tuple[str, ...] = ()

    @abc.abstractmethod
    def start(self, batch: int, condition: int | None = None) -> Any:
        """Begin `batch` sequences coded together; returns the state the next calls carry.

        Args:
            batch: b, the sequences of the group.
            condition: a class index (0 .. len(class_names) - 1), or None for unconditional.
        """

    @abc.abstractmethod
    def next_probabilities(self, state: Any, prefix: np.ndarray, sub_ids: np.ndarray) -> np.ndarray:
        """Probabilities of sub-id j of token t.

        Args:
            state: what `start` returned.
            prefix: (b, t, g) int64, the tokens before t (t = 0 for the first).
            sub_ids: (b, j) int64, the sub-ids of token t already known (j < g).

        Returns:
            (b, V_j) float32 or float64, non-negative and finite (rows need not sum to 1).
        """

    def min_bits(self) -> np.ndarray:
        """(max_tokens, g) float64: at most what the coder can spend on sub-id j of token t,
        whatever came before, as a floor: a lower bound a payload must hold.

        A file whose payload is smaller than the sum of its tokens' floors is refused before
        anything is decoded. The default is the range coder's own floor (its quantisation
        leaves every other symbol at least one unit); a model that knows its largest
        probability per position bounds it tighter.
        """
        floor = range_floor_bits(self.vocab_sizes)  # (g,)
        return np.broadcast_to(floor, (self.max_tokens, len(self.vocab_sizes)))

    def work_bytes(self, batch: int) -> int:
        """Bytes the model allocates at once for a group of `batch` sequences coded together
        (checked against `Limits.max_work_bytes` before `start`). Default: the probability
        arrays of one step, a few copies of (batch, max V) float64."""
        return 32 * batch * max(self.vocab_sizes)

    def session(self) -> contextlib.AbstractContextManager:
        """A context the coder holds while coding one file (e.g. pinning threads)."""
        return contextlib.nullcontext()

    def describe(self) -> str:
        return f"{self.kind} entropy model {self.identity.hex()}"


def files_identity(
    paths: Sequence[str | os.PathLike], within: str | os.PathLike | None = None
) -> bytes:
    """`MODEL_ID_BYTES` bytes of SHA-256 over the files' bytes, in order (config, then weights):
    `cat config.json model.safetensors | sha256sum | cut -c1-8`; each a regular file (inside
    `within` when given), else `EntropyModelLoadError`."""
    names = tuple(str(p) for p in paths)
    try:
        stamps = tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in names)
    except OSError as err:
        raise EntropyModelLoadError(f"{err.filename}: {err.strerror}") from None
    from tokenizers_vis.codec.identity import sha256_files  # (imports the tokenizer stack)

    root = None if within is None else str(within)
    return sha256_files(names, stamps, root, EntropyModelLoadError)[:MODEL_ID_BYTES]


def entropy_kinds() -> dict[str, str]:
    """Kind name -> "module:function" loader, built-in kinds first, then installed plug-ins."""
    found = dict(BUILTIN_KINDS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def _loader(kind: str) -> Callable[[Path], EntropyModel]:
    target = entropy_kinds()[kind]
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _shipped(name: str) -> Path | None:
    """The directory of a model shipped under `name`: asked of each kind's loader module through
    its optional `shipped_path(name) -> Path | None` (so `--entropy-model gpt_emoji` works
    without the tokenizer package knowing the generator's files)."""
    for target in entropy_kinds().values():
        module = importlib.import_module(target.partition(":")[0])
        found = getattr(module, "shipped_path", lambda _name: None)(name)
        if found is not None:
            return Path(found)
    return None


def _declared_kind(path: Path, limits: Limits, within: Path | None) -> str | None:
    config = read_json(path, limits, EntropyModelLoadError, within)
    kind = config.get("kind") if isinstance(config, dict) else None
    return kind if isinstance(kind, str) else None


def _candidates(path: Path) -> Iterator[tuple[Path, Path]]:
    """(directory, JSON naming its kind) to try, in order."""
    if path.is_file():
        yield path.parent, path
        return
    for name in ("config.json", STATIC_CONFIG):
        if (path / name).is_file():
            yield path, path / name


def _call_loader(kind: str, directory: Path, limits: Limits) -> EntropyModel:
    """A kind's loader on `directory`, given `limits` when it takes them (a plug-in written
    before limits existed takes the directory alone)."""
    loader = _loader(kind)
    try:
        takes_limits = "limits" in inspect.signature(loader).parameters
    except (TypeError, ValueError):  # a builtin or C function: no signature to read
        takes_limits = False
    return loader(directory, limits=limits) if takes_limits else loader(directory)


def load_entropy_model(path: str | os.PathLike, limits: Limits | None = None) -> EntropyModel:
    """The entropy model a directory holds, resolved by the kind its JSON declares.

    A directory with a `config.json` of an entropy kind (a GPT) is that model; otherwise its
    `entropy_static.json` (a static table, e.g. beside a tokenizer's own `config.json`). The
    path of a JSON file selects that file. Every JSON is read bounded by `limits` (default
    `DEFAULT_LIMITS`; `safe_read.read_json`), and only as a regular file.

    Raises:
        LimitError: a JSON or weights file larger or deeper than `limits`.
        EntropyModelLoadError: nothing loadable there, or a kind no installed package provides.
        ValueError: the model's own files are damaged (e.g. a `PretrainedError`).
    """
    path = Path(path).expanduser()
    if not path.exists():
        shipped = _shipped(str(path))
        if shipped is None:
            raise EntropyModelLoadError(f"{path}: no such file or directory or shipped model")
        path = shipped
    kinds, seen, limits = entropy_kinds(), [], limits or DEFAULT_LIMITS
    for directory, config in _candidates(path):
        # A JSON the user named is read where it points; one found in a folder only inside it.
        kind = _declared_kind(config, limits, None if config == path else directory)
        if kind in kinds:
            return _call_loader(kind, directory, limits)
        seen.append(f"{config.name} declares kind {kind!r}")
    if path.is_dir() and not (path / STATIC_CONFIG).exists():
        seen.append(f"no {STATIC_CONFIG} (`vistok entropy fit` writes one)")
    raise EntropyModelLoadError(
        f"{path} holds no entropy model: {'; '.join(seen)} (known kinds: {', '.join(kinds)}; "
        f"packages add kinds under the {ENTRY_POINT_GROUP!r} entry points)"
    )
