"""Training speed: measured throughput, and a run fitted to a wall-clock budget.

`Throughput` logs samples per second and seconds per step over windows of training steps
(validation time left out, the device synchronised at window ends so queued GPU work is
counted) and writes `throughput.json` beside the run's logs at the end.

`TimeBudget` is for a lease of fixed length (a borrowed GPU for ten minutes): it measures the
step rate after the first steps and sets `trainer.max_steps` so that the run ends inside the
budget. The cosine schedule reads `trainer.max_steps` at every step (TokenizerSystem), so the
learning rate then decays to its floor by the end of the budget instead of being cut off half
way, which is what `Trainer(max_time=...)` alone would do. The estimate is refitted after every
validation (whose time it then includes) until the run is 90 % done, and the run also stops
once the budget is spent.
"""

from __future__ import annotations

import json
import time
from typing import Any

import lightning as L
import torch

from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.training.callbacks import run_dir

__all__ = ["Throughput", "TimeBudget"]


def _sync(module: L.LightningModule) -> None:
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(first.shape[0])


class Throughput(L.Callback):
    """Log `perf/samples_per_s` and `perf/s_per_step` every `every_n_steps` training steps.

    Args:
        skip_steps: steps not timed at the start (compilation, workers filling their queues).
        every_n_steps: the window between two logged values.
    """

    def __init__(self, skip_steps: int = 20, every_n_steps: int = 50) -> None:
        if skip_steps < 0 or every_n_steps < 1:
            raise ValueError("skip_steps must be >= 0 and every_n_steps >= 1")
        self.skip_steps, self.every_n_steps = skip_steps, every_n_steps
        self._window_start: float | None = None
        self._window_steps = self._window_samples = 0
        self._paused_at: float | None = None
        self.total_seconds = 0.0
        self.total_steps = self.total_samples = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, _: int
    ) -> None:
        step = trainer.global_step
        if step < self.skip_steps:
            return
        if self._window_start is None:
            _sync(pl_module)
            self._window_start = time.perf_counter()
            return
        self._window_steps += 1
        self._window_samples += _batch_size(batch) * trainer.world_size
        if self._window_steps >= self.every_n_steps:
            self._close_window(trainer, pl_module)

    def _close_window(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _sync(pl_module)
        now = time.perf_counter()
        seconds = now - self._window_start
        if self._window_steps and seconds > 0:
            self.total_seconds += seconds
            self.total_steps += self._window_steps
            self.total_samples += self._window_samples
            pl_module.log_dict(
                {
                    "perf/samples_per_s": self._window_samples / seconds,
                    "perf/s_per_step": seconds / self._window_steps,
                },
                on_step=True,
                on_epoch=False,
            )
        self._window_start, self._window_steps, self._window_samples = now, 0, 0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and self._window_start is not None:
            _sync(pl_module)
            self._paused_at = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._paused_at is not None and self._window_start is not None:
            self._window_start += time.perf_counter() - self._paused_at  # leave validation out
        self._paused_at = None

    def summary(self) -> dict[str, Any]:
        """Totals over every timed window."""
        seconds, steps = self.total_seconds, self.total_steps
        return {
            "timed_steps": steps,
            "timed_seconds": round(self.total_seconds, 3),
            "samples_per_s": self.total_samples / seconds if seconds else None,
            "s_per_step": seconds / steps if steps else None,
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        device = pl_module.device
        info = {
            **self.summary(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": str(trainer.precision),
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
        }
        path = run_dir(trainer) / "throughput.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (json.dumps(info, indent=1) + "\n").encode())


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
