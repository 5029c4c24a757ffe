"""Training speed: a run fitted to a wall-clock budget, and the batch size for Lightning's
throughput meter.

Throughput itself is Lightning's `ThroughputMonitor` (samples and batches per second over a
window of 100 steps, validation time left out, CUDA synchronised before each reading); it needs
to be told how many samples a batch holds, which `batch_size` says for our data (images, or
(images, labels) pairs):

    --trainer.callbacks+=lightning.pytorch.callbacks.ThroughputMonitor
    --trainer.callbacks.batch_size_fn=tokenizers_vis.training.throughput.batch_size

`TokenizerSystem.flops_per_batch` (counted on the first step when the monitor is attached) adds
FLOP/s, and MFU on the GPUs whose peak Lightning knows.

`TimeBudget` is for a lease of fixed length (a borrowed GPU for ten minutes): it measures the
step rate after the first steps and sets `trainer.max_steps` so that the run ends inside the
budget. The cosine schedule reads `trainer.max_steps` at every step (TokenizerSystem), so the
learning rate then decays to its floor by the end of the budget instead of being cut off half
way, which is what `Trainer(max_time=...)` alone would do. The estimate is refitted after every
validation (whose time it then includes) until the run is 90 % done, and the run also stops
once the budget is spent.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

__all__ = ["TimeBudget", "batch_size"]


def _sync(module: L.LightningModule) -> None:
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


def batch_size(batch: Any) -> int:
    """Samples in a training batch: images (b 3 h w), or a tuple / list led by them."""
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(first.shape[0])


class TimeBudget(L.Callback):
    """Fit `trainer.max_steps` to `seconds` of training wall time (from the first step).

    Args:
        seconds: the budget; the run stops when it is spent whatever max_steps says.
        measure_from / measure_to: the steps between which the first rate is measured.
        safety: the fraction of the remaining time planned for (validation, checkpoints and
            the last export need the rest).
    """

    def __init__(
        self, seconds: float, measure_from: int = 20, measure_to: int = 100, safety: float = 0.95
    ) -> None:
        if seconds <= 0 or not 0 <= measure_from < measure_to or not 0 < safety <= 1:
            raise ValueError("need seconds > 0, 0 <= measure_from < measure_to, 0 < safety <= 1")
        self.seconds, self.safety = seconds, safety
        self.measure_from, self.measure_to = measure_from, measure_to
        self._start: float | None = None
        self._mark: tuple[int, float] | None = None
        self.fitted_steps: list[int] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def _refit(self, trainer: L.Trainer) -> None:
        if self._mark is None:
            return
        step, now = trainer.global_step, time.perf_counter()
        if step <= self._mark[0] or (trainer.max_steps > 0 and step >= 0.9 * trainer.max_steps):
            return
        rate = (step - self._mark[0]) / (now - self._mark[1])
        remaining = self.seconds - (now - self._start)
        steps = max(step + 1, step + int(remaining * rate * self.safety))
        trainer.fit_loop.epoch_loop.max_steps = steps  # what trainer.max_steps reads
        self.fitted_steps.append(steps)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, _: int
    ) -> None:
        step = trainer.global_step
        if step == self.measure_from and self._mark is None:
            _sync(pl_module)
            self._mark = (step, time.perf_counter())
        elif step == self.measure_to:
            _sync(pl_module)
            self._refit(trainer)
        if self._start is not None and time.perf_counter() - self._start > self.seconds:
            trainer.should_stop = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and trainer.global_step > self.measure_to:
            self._refit(trainer)
