"""A per-image cache of a frozen teacher's features, in memory and optionally on disk.

A teacher (`losses.teachers`) is the expensive part of an alignment loss: an InceptionV3 pass
per training image. Its features of an image never change, so they are computed once per image
(keyed by the image's uint8 bytes) and, with a file, once per machine.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from tokenizers_vis.data.transforms import to_uint8
from tokenizers_vis.quantizers.base import fp32


class FeatureCache:
    """Teacher features per image, keyed by the image's uint8 bytes (so augmented copies that
    differ in any pixel miss, and identical images hit). Features live on the CPU.

    Args:
        teacher: the frozen teacher (any callable images -> (b f) features).
        max_entries: oldest entries are dropped past this (3,459 emoji x 2048 floats = 28 MB);
            0 caches nothing.
        path: optional safetensors file that keeps the features across runs: read at start when
            it holds features of the same `teacher_key`, rewritten (atomically) as new features
            accumulate. Runs on the same images with the same teacher then skip its passes (an
            InceptionV3 pass over the 3,459 training emoji costs a CPU-thread about 15 minutes).
        teacher_key: what identifies the teacher (its spec); a file of another teacher is
            ignored and then overwritten.
    """

    SAVE_EVERY = 1024  # new entries between rewrites of `path` (and on the first all-hit call)

    def __init__(
        self,
        teacher: Callable[[Tensor], Tensor],
        max_entries: int = 100_000,
        path: str | Path | None = None,
        teacher_key: str = "",
    ) -> None:
        self.teacher = teacher
        self.max_entries = max_entries
        self.store: OrderedDict[bytes, Tensor] = OrderedDict()
        self.hits = self.misses = 0
        self.path = None if path is None else Path(path)
        self.teacher_key, self.unsaved = teacher_key, 0
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            if (f.metadata() or {}).get("teacher") != self.teacher_key:
                return
            keys, features = f.get_tensor("keys"), f.get_tensor("features")  # (n 16), (n f)
        self.store.update((bytes(k.tolist()), v) for k, v in zip(keys, features, strict=True))

    def _save(self) -> None:
        from safetensors.torch import save

        from tokenizers_vis.atomic import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = torch.tensor([list(k) for k in self.store], dtype=torch.uint8)  # (n 16)
        tensors = {"keys": keys, "features": torch.stack(list(self.store.values()))}
        atomic_write(self.path, save(tensors, metadata={"teacher": self.teacher_key}))
        self.unsaved = 0

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        """(b 3 h w) in [-1, 1] -> (b f) float32 on `images.device`, without gradients.

        The teacher runs in fp32 with autocast off: it runs once per image, and its features are
        targets, not something to trade precision for.
        """
        pixels = to_uint8(images.detach().float().cpu())  # (b 3 h w) uint8
        keys = [hashlib.blake2b(p.numpy().tobytes(), digest_size=16).digest() for p in pixels]
        found = {i: self.store[key] for i, key in enumerate(keys) if key in self.store}
        todo = [i for i in range(len(keys)) if i not in found]
        if todo:
            if isinstance(self.teacher, nn.Module):
                self.teacher.to(images.device)
            with fp32(images.device.type):
                fresh = self.teacher(images[todo].detach().float()).float().cpu()  # (m f)
            found |= dict(zip(todo, fresh, strict=True))
            if self.max_entries > 0:
                self.store.update((keys[i], found[i]) for i in todo)
                self.unsaved += len(todo)
                while len(self.store) > self.max_entries:
                    self.store.popitem(last=False)
        if self.path is not None and self.unsaved and (not todo or self.unsaved >= self.SAVE_EVERY):
            self._save()
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        return torch.stack([found[i] for i in range(len(keys))]).to(images.device)
