"""`ImageDataModule`: the Lightning data module every training config points at.

Batches are `(images (b, 3, s, s) float32 in [-1, 1], labels (b,) int64)` whatever the source:
- shard specs (`shards:...`) stream with WebDataset: train resamples shards (a distinct,
  seeded stream per rank and worker) through a shuffle buffer, `train_samples_per_epoch`
  long; val/test read every sample once, split by node and then by worker.
- other specs are map-style datasets. Train draws them through a `ResumableSampler`: a
  shuffle seeded per epoch, sliced per rank like torch's DistributedSampler (the rank and
  replica count come from `trainer.distributed_sampler_kwargs`; being a DistributedSampler,
  Lightning keeps it instead of swapping in its own). Val/test read in order; under DDP
  Lightning gives them a DistributedSampler.

The train loader is a `ResumableLoader`, so `--ckpt_path` resumes mid-epoch: map-style data
continues with exactly the batch the uninterrupted run would have drawn next, shard streams
are re-seeded (see `tokenizers_vis.data.resumable`). Augmentation is not restored: each
worker's generator (`WorkerGenerator`) starts again from its seed, so a resumed run
augments reproducibly but not as the uninterrupted run would have.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from tokenizers_vis.data.build import build_dataset, parse_spec
from tokenizers_vis.data.resumable import ResumableLoader, ResumableSampler
from tokenizers_vis.data.shards import ShardDataset

__all__ = ["ImageDataModule", "check_spec"]


def check_spec(spec: str | dict) -> None:
    """Parse a data spec and check that a `folder:` spec's directory exists.

    Raises:
        ValueError: the spec does not parse (see `parse_spec`).
        FileNotFoundError: a folder spec names no directory. Raised while the CLI builds its
            classes, where it becomes one line ("vistok train: error: ..."), not a traceback
            from inside `trainer.fit`.
    """
    name, kwargs = parse_spec(spec)
    if name == "folder" and not Path(kwargs["root"]).is_dir():
        raise FileNotFoundError(f"data {spec!r}: {kwargs['root']} is not a directory")


class ImageDataModule(L.LightningDataModule):
    """Images and labels for tokenizer training.

    Args:
        train_data: data spec of the training set ("emoji", "photos", "folder:/p", "shards:/p").
        val_data: data spec for validation/test; None uses `train_data` (for shards, give a
            folder, "shards:/dir", so each split finds its own `{split}-*.tar`).
        image_size: side of the square images.
        batch_size: per device.
        num_workers: data-loader workers per device.
        shuffle_buffer: samples in the shard shuffle buffer (shard specs only).
        augment: random crop + horizontal flip on the training set.
        seed: seeds shuffling, shard sampling and augmentation.
        train_samples_per_epoch: samples per epoch per device for streamed shards; default
            the packed count (else 10,000) divided by the number of devices.
        val_split: split used by `val_dataloader` ("val"; "test" is used by `test_dataloader`).
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory (useful with CUDA).
        dataset_kwargs: extra constructor arguments for both datasets (e.g. cache_dir).
    """

    def __init__(
        self,
        train_data: str | dict = "emoji",
        val_data: str | dict | None = None,
        image_size: int = 32,
        batch_size: int = 64,
        num_workers: int = 0,
        shuffle_buffer: int = 2000,
        augment: bool = False,
        seed: int = 0,
        train_samples_per_epoch: int | None = None,
        val_split: str = "val",
        drop_last: bool = True,
        pin_memory: bool = False,
        dataset_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_spec(train_data)  # fail at construction, not hours later in setup()
        check_spec(val_data if val_data is not None else train_data)
        self.train_data, self.val_data = (
            train_data,
            val_data if val_data is not None else train_data,
        )
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.shuffle_buffer, self.augment, self.seed = shuffle_buffer, augment, seed
        self.train_samples_per_epoch, self.val_split = train_samples_per_epoch, val_split
        self.drop_last, self.pin_memory = drop_last, pin_memory
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.datasets: dict[str, Any] = {}

    def _world(self) -> int:
        return max(1, self.trainer.world_size) if self.trainer is not None else 1

    def _replicas(self) -> dict[str, int]:
        """num_replicas and rank of this process among the data-parallel ones."""
        kwargs = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if not kwargs:
            return {"num_replicas": 1, "rank": 0}
        return {"num_replicas": int(kwargs["num_replicas"]), "rank": int(kwargs["rank"])}

    def _is_shards(self, spec: str | dict) -> bool:
        return parse_spec(spec)[0] == "shards"

    def _build(self, spec: str | dict, split: str) -> Any:
        train = split == "train"
        kwargs: dict[str, Any] = {**self.dataset_kwargs, "seed": self.seed}
        if self._is_shards(spec):
            kwargs.update(resampled=train, shuffle_buffer=self.shuffle_buffer if train else 0)
        kwargs["augment"] = self.augment and train
        ds = build_dataset(spec, split, self.image_size, **kwargs)
        if isinstance(ds, ShardDataset) and train:
            per_device = self.train_samples_per_epoch or math.ceil(
                (ds.count or 10_000) / self._world()
            )
            ds.epoch_samples = math.ceil(per_device / max(1, self.num_workers))
        elif isinstance(ds, ShardDataset) and len(ds.urls) < self._world():
            # Workers without a shard just yield nothing; a *rank* without one stalls DDP.
            warnings.warn(
                f"{len(ds.urls)} {split} shards for {self._world()} devices: some get no data; "
                "pack with a smaller --shard-size",
                stacklevel=2,
            )
        return ds

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and "train" not in self.datasets:
            self.datasets["train"] = self._build(self.train_data, "train")
        if stage in (None, "fit", "validate") and "val" not in self.datasets:
            self.datasets["val"] = self._build(self.val_data, self.val_split)
        if stage in (None, "test") and "test" not in self.datasets:
            self.datasets["test"] = self._build(self.val_data, "test")

    def _dataset(self, name: str) -> Any:
        if name not in self.datasets:  # called without Lightning: build only what is asked for
            self.setup({"train": "fit", "val": "validate", "test": "test"}[name])
        return self.datasets[name]

    def _loader_kwargs(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            # Persistent workers keep each shard stream's pass counter (fresh orders per epoch)
            # and skip re-forking every epoch.
            "persistent_workers": self.num_workers > 0,
            "pin_memory": self.pin_memory,
        }

    def train_dataloader(self) -> ResumableLoader:
        ds = self._dataset("train")
        sampler = None
        if not isinstance(ds, torch.utils.data.IterableDataset):
            sampler = ResumableSampler(ds, shuffle=True, seed=self.seed, **self._replicas())
        return ResumableLoader(
            ds,
            sampler=sampler,
            drop_last=self.drop_last,
            # Only seeds the workers' base seed now: the sampler draws the order itself.
            generator=torch.Generator().manual_seed(self.seed) if sampler is not None else None,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("val"), shuffle=False, **self._loader_kwargs())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("test"), shuffle=False, **self._loader_kwargs())

    @property
    def class_names(self) -> list[str]:
        """Class names of the training set (empty if unknown)."""
        if "train" not in self.datasets:
            self.setup("fit")
        return list(getattr(self.datasets["train"], "class_names", []))
