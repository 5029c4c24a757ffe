"""A training DataLoader whose position in the epoch survives a checkpoint.

Lightning 2.x calls `state_dict()` on every train loader that has `state_dict` /
`load_state_dict` when it saves a checkpoint, and `load_state_dict()` on a `--ckpt_path`
resume before it iterates the loader again (`FitLoop.setup_data`). With `ResumableLoader`
and `ResumableSampler` a run killed mid-epoch continues with exactly the batch the
uninterrupted run would have drawn next:

- map-style datasets: the sampler is a seeded shuffle per epoch, so the saved
  `(epoch, batches)` names a position in a permutation that can be rebuilt; the resumed
  epoch starts that many samples in, at the *sampler*, so skipped images are never decoded.
- `ShardDataset` streams (resampled, endless) cannot be fast-forwarded without re-reading
  every tar record consumed so far, so a resume re-seeds them instead; see
  `ShardDataset.resume`.

What Lightning 2.6 fetches ahead (checked by tests/test_data_resume.py, which also
compares every resumed step with an uninterrupted run): `_PrefetchDataFetcher` skips its
one-batch look-ahead when the loader has a length, as the map-style loaders here do, so in a
checkpoint written at `on_train_batch_end` (`every_n_train_steps`) or after a mid-epoch
validation (`val_check_interval`) the batches this loader has handed out are exactly the
batches trained on. A loader without a length (shard streams) *is* fetched one batch
ahead: its count is one more than the steps trained, which for a re-seeded stream only
shifts the seed and makes the resumed epoch one batch shorter. Workers prefetching indices
or samples does not matter: batches are counted as the loader yields them.

One case Lightning itself gets wrong, with any loader: resuming from a checkpoint written
in `on_train_epoch_end` (`save_on_train_epoch_end=True`; our configs save by step) runs one
extra step in the finished epoch and then calls `set_epoch` one epoch ahead. Here that
extra step gets the right batch, but the rest of that epoch is skipped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from tokenizers_vis.data.shards import ShardDataset
from tokenizers_vis.data.transforms import mix_seed

__all__ = ["ResumableLoader", "ResumableSampler"]


class ResumableSampler(DistributedSampler):
    """This rank's slice of a seeded per-epoch shuffle, which can start mid-epoch.

    Slicing is torch's `DistributedSampler`: the epoch's permutation is padded (by repeating
    its start) to a multiple of `num_replicas`, and rank r takes positions r, r + R, r + 2R...,
    so ranks are disjoint within an epoch. Being a `DistributedSampler` also tells Lightning
    not to swap in its own sampler under DDP. With one replica it is a plain seeded shuffle.

    Args:
        dataset: anything with a length.
        num_replicas: number of data-parallel ranks.
        rank: this rank.
        shuffle: shuffle per epoch (else dataset order).
        seed: the permutation of epoch e is seeded by `(seed, e)`.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0  # samples of this rank's epoch to skip in the next pass

    def order(self) -> list[int]:
        """This rank's whole epoch: dataset indices in the order they are drawn."""
        n = len(self.dataset)
        if self.shuffle:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            perm = torch.randperm(n, generator=gen).tolist()
        else:
            perm = list(range(n))
        pad = self.total_size - n
        if pad > 0:
            perm += (perm * math.ceil(pad / n))[:pad]
        return perm[self.rank : self.total_size : self.num_replicas]

    def resume(self, epoch: int, start: int) -> None:
        """Make the next pass draw epoch `epoch` from its `start`-th sample on (this rank)."""
        self.epoch, self.start = epoch, start

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0  # a start position belongs to the epoch it was saved in
        super().set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0  # only the first pass after `resume` is cut
        return iter(self.order()[start:])

    # __len__ stays the whole epoch even for a resumed pass: Lightning restores how many
    # batches of the epoch it ran and counts on from there against the full length.


class ResumableLoader(DataLoader):
    """A DataLoader that saves and restores its position in the epoch.

    Use it with a `ResumableSampler` (map-style datasets) or a `ShardDataset`; with anything
    else `load_state_dict` warns and the epoch restarts, as a plain DataLoader's would.

    `state_dict()` gives `{"epoch", "batches", "ended", "total_batches", "batch_size",
    "num_replicas", "seed"}`: the epoch of the current pass, the batches it has yielded,
    whether it ran to its end, the batches yielded since the run began (across resumes), and
    what is needed to turn batches into samples.
    Rank 0's state is the one Lightning saves; every rank yields the same number of batches
    per step, so each rank restores its own slice from it.
    """

    # Class-level defaults keep DataLoader's __init__ untouched, so Lightning can still
    # re-instantiate the loader from its recorded arguments (e.g. for overfit_batches).
    _pass_epoch = 0
    _passes = 0  # passes started, across resumes: the epoch of loaders without a sampler epoch
    _epoch_batches = 0
    _total_batches = 0
    _pass_ended = False
    _resume_at = 0

    def __iter__(self) -> Iterator[Any]:
        return self._counted()

    def _counted(self) -> Iterator[Any]:
        # A generator: nothing here runs until the first batch is asked for. Lightning calls
        # iter() on the train loader in FitLoop.setup_data but set_epoch() only afterwards
        # (FitLoop.on_advance_start), and workers would draw indices at iter() time.
        self._epoch_batches, self._resume_at = self._resume_at, 0
        self._pass_epoch = getattr(self.sampler, "epoch", self._passes)
        self._passes, self._pass_ended = self._pass_epoch + 1, False
        batches = super().__iter__()
        if self.num_workers > 0 and isinstance(self.dataset, ShardDataset):
            self.dataset.first_pass = None  # the workers took their copy with the cut
        for batch in batches:
            self._epoch_batches += 1
            self._total_batches += 1
            yield batch
        self._pass_ended = True

    def state_dict(self) -> dict[str, Any]:
        """The position to resume from (JSON-able)."""
        return {
            "epoch": self._pass_epoch,
            "batches": self._epoch_batches,
            "ended": self._pass_ended,
            "total_batches": self._total_batches,
            "batch_size": self.batch_size,
            "num_replicas": getattr(self.sampler, "num_replicas", 1),
            "seed": getattr(self.sampler, "seed", getattr(self.dataset, "seed", None)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next pass continue where the saved one stopped."""
        self._total_batches = int(state["total_batches"])
        if isinstance(self.sampler, ResumableSampler):
            self._resume_sampler(self.sampler, state)
        elif isinstance(self.dataset, ShardDataset):
            self._resume_stream(self.dataset, state)
        else:
            warnings.warn(
                f"{type(self.sampler).__name__} cannot resume mid-epoch; the epoch restarts",
                stacklevel=2,
            )

    def _resume_sampler(self, sampler: ResumableSampler, state: dict[str, Any]) -> None:
        if state["seed"] != sampler.seed:
            warnings.warn(
                f"resuming with the checkpoint's data seed {state['seed']} (configured: "
                f"{sampler.seed}) so the interrupted epoch's order is kept",
                stacklevel=3,
            )
            sampler.seed = state["seed"]
        # Counted in samples of the whole epoch's permutation (all ranks together), so a
        # changed batch size or device count resumes at the same sample (later checkpoints
        # of that epoch then round down to whole batches).
        seen = int(state["batches"]) * int(state["batch_size"]) * int(state["num_replicas"])
        epoch, start = int(state["epoch"]), seen // sampler.num_replicas
        left = sampler.num_samples - start
        if state.get("ended") or left < (self.batch_size if self.drop_last else 1):
            epoch, start = epoch + 1, 0  # the saved epoch was used up
        sampler.resume(epoch, start)
        self._pass_epoch, self._resume_at = epoch, start // self.batch_size
        self._epoch_batches = self._resume_at

    def _resume_stream(self, dataset: ShardDataset, state: dict[str, Any]) -> None:
        batches, size = int(state["batches"]), int(state["batch_size"])
        # Each worker yields whole batches in turn, starting with worker 0 every pass.
        workers = max(1, self.num_workers)
        consumed = [len(range(w, batches, workers)) * size for w in range(workers)]
        # The next pass is the rest of the saved one, which may hold no full batch: Lightning
        # fetches a loader without a length one batch ahead, so a pass can look used up though
        # its last batch was never trained on (the loop then ends that epoch at once).
        self._passes = int(state["epoch"])
        if state.get("ended") or not dataset.epoch_samples:
            consumed, batches = [], 0  # it had ended (or never ends): a whole new pass
            self._passes += 1
        dataset.resume(self._total_batches, consumed)
        self._pass_epoch, self._resume_at, self._epoch_batches = self._passes, batches, batches
