"""Pretokenized data: token ids as WebDataset shards, written once, streamed while a GPT trains.

Layout (written by `TokenShardWriter`, i.e. `vistok pretokenize`):
    {dir}/{split}-000000.tar ...   samples {key}.ids.npy ((n, g) int16 / int32 ids) and
                                   {key}.json (label, length, view, source index, name)
    {dir}/{split}.json             format, tokenizer, vocab_sizes, max_tokens, class names,
                                   per-shard counts, views

Each shard is filled in memory and renamed into place when complete, so a crash leaves no partial
`.tar` for a glob to find. `TokenShards` yields `(ids (n g) int64, length, label)`: training
streams resample shards (a seeded stream per rank and worker) through a shuffle buffer; evaluation
streams read every sample once, split by node and then by worker. `TokenDataModule` serves them to
Lightning and exposes the data's `info` (vocabularies, K, classes), which the GPT is built from.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from tokenizers_vis.atomic import OutputExistsError, atomic_write, atomic_write_with
from tokenizers_vis.data import shard_urls

FORMAT = "vistok-tokens/1"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


class TokenShardWriter:
    """Write `(ids (n g), label, meta)` samples to `{split}-NNNNNN.tar` and `{split}.json`.

    Args:
        out_dir: folder, created if missing.
        split: shard name prefix.
        vocab_sizes: the tokenizer's vocabularies (ids are stored as int16 when they fit).
        shard_size: samples per shard.
        overwrite: replace existing `{split}` shards instead of raising FileExistsError.
        info: more entries for `{split}.json` (tokenizer, max_tokens, class_names, source ...).
    """

    def __init__(
        self,
        out_dir: str | Path,
        split: str,
        vocab_sizes: tuple[int, ...],
        shard_size: int = 5000,
        overwrite: bool = False,
        info: dict[str, Any] | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir, self.split, self.shard_size = Path(out_dir), split, shard_size
        self.dtype = np.int16 if max(vocab_sizes) <= np.iinfo(np.int16).max + 1 else np.int32
        self.info = {"format": FORMAT, "split": split, "vocab_sizes": list(vocab_sizes)}
        self.info.update(info or {})
        self.shards: dict[str, int] = {}
        self._pending: list[dict[str, bytes | str]] = []
        self.out_dir.mkdir(parents=True, exist_ok=True)
        old = sorted(self.out_dir.glob(f"{split}-*.tar"))
        if old and not overwrite:
            raise OutputExistsError(
                f"{self.out_dir} already holds {len(old)} {split} shards; use --overwrite"
            )
        for path in [*old, self.out_dir / f"{split}.json"]:
            path.unlink(missing_ok=True)

    def write(self, key: str, ids: np.ndarray, label: int, meta: dict[str, Any]) -> None:
        """One sample: ids (n g) integer array, its class label, JSON-able metadata."""
        record = {**meta, "label": int(label), "length": int(ids.shape[0])}
        self._pending.append(
            {
                "__key__": key,
                "ids.npy": _npy(np.ascontiguousarray(ids, dtype=self.dtype)),
                "json": json.dumps(record, sort_keys=True).encode(),
            }
        )
        if len(self._pending) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        name = f"{self.split}-{len(self.shards):06d}.tar"
        samples, self._pending = self._pending, []

        def write(tmp: Path) -> None:
            # An int mtime: a float one costs every member a PAX header (twice the size).
            with open(tmp, "xb") as f, wds.TarWriter(f, encoder=False, mtime=0) as tar:
                for sample in samples:
                    tar.write(sample)

        atomic_write_with(self.out_dir / name, write)
        self.shards[name] = len(samples)

    def close(self) -> dict[str, Any]:
        """Write the last shard and `{split}.json`; returns that info."""
        self._flush()
        info = {**self.info, "count": sum(self.shards.values()), "shards": self.shards}
        atomic_write(
            self.out_dir / f"{self.split}.json", (json.dumps(info, indent=1) + "\n").encode()
        )
        return info


def read_info(root: str | Path, split: str) -> dict[str, Any]:
    """`{root}/{split}.json` of pretokenized shards; FileNotFoundError / ValueError if unusable."""
    path = Path(root) / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `vistok pretokenize` first")
    info = json.loads(path.read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{path} is not pretokenized data ({FORMAT}), got {info.get('format')!r}")
    return info


def _decode(sample: dict[str, bytes]) -> tuple[torch.Tensor, int, int]:
    ids = np.load(io.BytesIO(sample["ids.npy"]), allow_pickle=False)  # (n g)
    meta = json.loads(sample["json"])
    return torch.from_numpy(ids.astype(np.int64)), int(meta["length"]), int(meta["label"])


class TokenShards(IterableDataset):
    """Samples of pretokenized shards: `(ids (n g) int64, length, label)`.

    Args:
        root: the folder `vistok pretokenize` wrote.
        split: which `{split}-*.tar` to read.
        resampled: draw shards with replacement forever (training), else one ordered pass.
        shuffle_buffer: samples held for shuffling (0 or 1: none).
        seed: seeds shard draws and shuffling.
        epoch_samples: with `resampled`, the samples each worker yields per epoch.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        resampled: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        epoch_samples: int | None = None,
    ) -> None:
        super().__init__()
        self.info = read_info(root, split)
        self.urls = shard_urls(str(root), split)
        self.resampled, self.shuffle_buffer = resampled, shuffle_buffer
        self.seed, self.epoch_samples = seed, epoch_samples
        self.passes = 0  # per process: each pass (epoch) shuffles in a new order

    def __len__(self) -> int:  # Lightning's progress bar; exact for one ordered pass
        return self.epoch_samples if self.resampled and self.epoch_samples else self.info["count"]

    def _pipeline(self) -> wds.DataPipeline:
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        if self.resampled:
            stages: list[Any] = [
                wds.ResampledShards(
                    self.urls, seed=self.seed * 1_000_003 + self.passes, deterministic=True
                )
            ]
        else:
            stages = [wds.SimpleShardList(self.urls), wds.split_by_node, wds.split_by_worker]
        stages.append(wds.tarfile_to_samples())
        if self.shuffle_buffer > 1:
            rng = random.Random(f"{self.seed}-{rank}-{worker}-{self.passes}")
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng))
        stages.append(wds.map(_decode))
        pipe = wds.DataPipeline(*stages)
        if self.resampled and self.epoch_samples:
            pipe = pipe.with_epoch(math.ceil(self.epoch_samples / max(1, workers)))
        return pipe

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, int]]:
        pipe = self._pipeline()
        self.passes += 1
        return iter(pipe)


class TokenDataModule(L.LightningDataModule):
    """Pretokenized shards for GPT training: batches `(ids (b n g), lengths (b,), labels (b,))`.

    Args:
        root: the folder `vistok pretokenize` wrote.
        batch_size: per device.
        num_workers: data-loader workers per device.
        shuffle_buffer: training samples held for shuffling.
        seed: seeds shard draws and shuffling.
        train_split, val_split: the splits to read.
        train_samples_per_epoch: per device; default the training split's count.
        pin_memory: pin host memory (with CUDA).
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 64,
        num_workers: int = 0,
        shuffle_buffer: int = 5000,
        seed: int = 0,
        train_split: str = "train",
        val_split: str = "val",
        train_samples_per_epoch: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root, self.batch_size, self.num_workers = root, batch_size, num_workers
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.train_split, self.val_split = train_split, val_split
        self.train_samples_per_epoch, self.pin_memory = train_samples_per_epoch, pin_memory
        train = read_info(root, train_split)  # fail now, not in setup()
        self.info: dict[str, Any] = {
            key: train.get(key)
            for key in ("vocab_sizes", "max_tokens", "num_classes", "class_names", "tokenizer")
        }

    def _loader(self, dataset: TokenShards, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        count = read_info(self.root, self.train_split)["count"]
        per_device = self.train_samples_per_epoch or math.ceil(
            count / max(1, self.trainer.world_size if self.trainer else 1)
        )
        ds = TokenShards(
            self.root, self.train_split, True, self.shuffle_buffer, self.seed, per_device
        )
        return self._loader(ds, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(TokenShards(self.root, self.val_split), drop_last=False)
