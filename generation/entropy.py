"""The GPT as an entropy model: its next-token probabilities range code token files (payload
coding 2, `tokenizers_vis.codec.entropy_coding`).

Registered under the `vistok.entropy_models` entry-point group as kind "gpt" (pyproject.toml),
so `vistok encode --entropy-model GPT_DIR` finds it from the directory's `config.json` without
tokenizers_vis importing this package.

Encoder and decoder must compute bit-identical probabilities, so both go through the one
incremental path here: a KV cache per group of tiles, one position per step (`GPT.hidden` with
the whole prefix, as sampling does), the factorized head for sub-id j given sub-ids < j, then a
softmax, all in fp32 with autocast off, on the CPU with one intra-op thread (thread counts and
devices change the order of floating-point sums). The file's ids checksum catches the machines
where even that differs. Without a class the GPT's null class (its unconditional prediction) is
used; a class given at encoding is stored in the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from generation.gpt import GPT, KVCache
from tokenizers_vis.codec import (
    CODING_MODEL,
    MODEL_ID_BYTES,
    EntropyModel,
    files_identity,
    module_digest,
)
from tokenizers_vis.limits import Limits

__all__ = ["GPTEntropyModel", "load"]


@dataclass
class _State:
    """One group's KV cache, labels and the trunk feature of the token being coded."""

    cache: KVCache
    labels: Tensor  # (b,)
    h: Tensor | None = None  # (b w)


def _tensor_identity(gpt: GPT) -> bytes:
    """For a GPT that was never saved: a hash of its spec and every tensor."""
    return module_digest(gpt, b"vistok-unsaved-gpt\0")[:MODEL_ID_BYTES]


class GPTEntropyModel(EntropyModel):
    """Next-token probabilities of a GPT, for range coding.

    Args:
        gpt: the model (put in eval mode, fp32, on `device`).
        identity: its `MODEL_ID_BYTES`-byte identity; default: a hash of its spec and tensors
            (`load` uses the directory's files, as `sha256sum` gives).
        device: where it runs; "cpu" (the default) keeps files portable between machines with
            and without GPUs.
    """

    kind = "gpt"
    coding = CODING_MODEL

    def __init__(self, gpt: GPT, identity: bytes | None = None, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.gpt = gpt.to(device=self.device, dtype=torch.float32).eval()
        self.identity = identity if identity is not None else _tensor_identity(gpt)
        self.vocab_sizes = tuple(gpt.vocab_sizes)
        self.max_tokens = gpt.max_tokens
        self.class_names = tuple(gpt.class_names) or tuple(str(c) for c in range(gpt.num_classes))

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        threads = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(1)  # one summation order, whatever the caller's setting
        try:
            with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
                yield
        finally:
            torch.set_num_threads(threads)

    def work_bytes(self, batch: int) -> int:
        """The group's KV cache (keys and values of every trunk layer for K positions, fp32),
        plus one step's activations and probabilities: what `start` leads to allocating."""
        gpt = self.gpt
        width = gpt.embed[0].embedding_dim
        cache = 2 * len(gpt.blocks) * batch * gpt.max_tokens * width * 4
        step = batch * (64 * width + 32 * max(self.vocab_sizes))  # qkv, MLP, logits, softmax
        return cache + step

    def start(self, batch: int, condition: int | None = None) -> _State:
        labels = None if condition is None else torch.full((batch,), condition)
        labels = self.gpt.labels_for(labels, batch, self.device)  # (b,), null class if None
        return _State(self.gpt.new_cache(), labels)

    def next_probabilities(
        self, state: _State, prefix: np.ndarray, sub_ids: np.ndarray
    ) -> np.ndarray:
        if sub_ids.shape[1] == 0:  # a new token: one more trunk position
            ids = torch.from_numpy(np.ascontiguousarray(prefix)).to(self.device)  # (b t g)
            state.h = self.gpt.hidden(ids, state.labels, state.cache)[:, -1]  # (b w)
        subs = torch.from_numpy(np.ascontiguousarray(sub_ids)).to(self.device)  # (b j)
        logits = self.gpt.sub_logits(state.h, subs)  # (b V_j)
        return logits.float().softmax(dim=-1).cpu().numpy()  # (b V_j) float32


def shipped_path(name: str) -> Path | None:
    """The directory of a GPT shipped under `name` (`load_entropy_model` asks), or None."""
    return GPT.shipped_dir / name if name in GPT.list_pretrained() else None


def load(directory: str | Path, limits: Limits | None = None) -> GPTEntropyModel:
    """The GPT of a pretrained directory as an entropy model (the "gpt" entry point).

    Its identity is the first bytes of SHA-256 over `config.json` then `model.safetensors`.

    Raises:
        PretrainedError: the directory is not a loadable GPT, naming the file at fault.
        LimitError: its files or spec ask for more than `limits` (default `DEFAULT_LIMITS`).
    """
    found = GPT.open_pretrained(directory, limits)  # resolved and checked once, then loaded
    gpt = GPT.from_pretrained(found, limits=limits)
    identity = files_identity([found.config_path, found.weights_path], within=found.within)
    return GPTEntropyModel(gpt, identity)
