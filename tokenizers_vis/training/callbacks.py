"""Training callbacks: reconstruction grids at several prefix lengths, codebook usage per position.

EMA weights come from Lightning's `EMAWeightAveraging` with a warmed-up decay (`WarmupEMA`, see
configs/trainer/*.yaml); it swaps the averaged weights in for validation, so grids and metrics
show the EMA model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch import Tensor

from tokenizers_vis.atomic import atomic_write, atomic_write_with
from tokenizers_vis.data.transforms import to_uint8
from tokenizers_vis.metrics.usage import CodebookUsage as UsageMeter


def grid_rows(tokenizer: Any, images: Tensor, ks: list[int]) -> Tensor:
    """Originals on top, then one row per k: (rows*b 3 h w) in [-1, 1]."""
    rows = [images]
    for k in ks:
        rows.append(tokenizer.decode(tokenizer.encode(images, num_tokens=k)))
    return torch.cat(rows)


def save_grid(images: Tensor, ncol: int, path: Path) -> Path:
    """Tile (n 3 h w) in [-1, 1] into a PNG with `ncol` columns, written atomically."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(to_uint8(images.float().cpu()), nrow=ncol, padding=2, pad_value=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(grid.permute(1, 2, 0).numpy())
    return atomic_write_with(path, lambda tmp: image.save(tmp, format="PNG"))


def run_dir(trainer: L.Trainer) -> Path:
    """The run's log directory, as `Trainer.log_dir` gives it but without its broadcast.

    `Trainer.log_dir` is a collective under DDP: reading it on rank zero alone hangs the run.
    """
    logger = trainer.logger
    path = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
    return Path(path or trainer.default_root_dir)


class ReconstructionGrid(L.Callback):
    """Every `every_n_steps`, decode the first validation images at each k of `eval_tokens`.

    Writes `<log_dir>/grids/step_XXXXXXX.png` (rows: original, k = 1, 2, 4, ..., K) and, when the
    logger is TensorBoard, logs the grid there too.
    """

    def __init__(self, every_n_steps: int = 500, num_images: int = 8) -> None:
        self.every_n_steps = every_n_steps
        self.num_images = num_images
        self._last_step = -1

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        step = trainer.global_step
        due = step - self._last_step >= self.every_n_steps or self._last_step < 0
        if batch_idx != 0 or not due or trainer.sanity_checking or not trainer.is_global_zero:
            return
        self._last_step = step
        images = batch[0][: self.num_images]
        tokenizer = pl_module.tokenizer
        was_training = tokenizer.training
        tokenizer.eval()
        grid = grid_rows(tokenizer, images, pl_module.eval_tokens)
        tokenizer.train(was_training)
        path = save_grid(grid, images.shape[0], run_dir(trainer) / "grids" / f"step_{step:07d}.png")
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            from torchvision.io import decode_image

            experiment.add_image("val/reconstructions", decode_image(str(path)), step)


class CodebookUsage(L.Callback):
    """Codebook usage over each validation run, overall and per token position.

    Counts the ids of every validation image at all K positions (taken from `validation_step`'s
    output, else by encoding the batch), sums the counts over DDP ranks and logs
    `val/usage/perplexity` (effective number of codes, mean over sub-codebooks),
    `val/usage/used_fraction` (codes used at least once) and, per position, the perplexity's
    min / mean / first / last as `val/usage/perplexity_pos_{min,mean,first,last}`. The full
    per-position vectors go to `<log_dir>/usage/step_XXXXXXX.json`: a dead tail of positions or a
    first token stuck on a few codes shows there, not in the overall numbers.

    Args:
        per_position: count per (position, code); False keeps only (code,) counts, for
            vocabularies so large that K x vocab int64 counts do not fit.
    """

    def __init__(self, per_position: bool = True) -> None:
        self.per_position = per_position
        self.meter: UsageMeter | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.meter = UsageMeter(pl_module.tokenizer.vocab_sizes, per_position=self.per_position)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        ids = outputs.get("ids") if isinstance(outputs, dict) else None
        if ids is None:
            ids = pl_module.tokenizer.encode(batch[0]).ids  # (b K g)
        self.meter.update(ids.detach())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reduce(trainer, pl_module)
        stats = self.meter.compute()
        if trainer.sanity_checking or not stats["num_tokens"]:
            return
        values = {
            "val/usage/perplexity": stats["perplexity_mean"],
            "val/usage/used_fraction": stats["usage_mean"],
        }
        if self.per_position:
            per_pos = stats["perplexity_per_position"].nanmean(-1)  # (K,) mean over sub-codebooks
            values |= {
                "val/usage/perplexity_pos_min": per_pos.nan_to_num(math.inf).min().item(),
                "val/usage/perplexity_pos_mean": per_pos.nanmean().item(),
                "val/usage/perplexity_pos_first": per_pos[0].item(),
                "val/usage/perplexity_pos_last": per_pos[-1].item(),
            }
        # Every rank holds the same reduced values; sync_dist only keeps Lightning from warning.
        for name, value in values.items():
            pl_module.log(name, float(value), sync_dist=True)
        if trainer.is_global_zero:
            name = f"step_{trainer.global_step:07d}.json"
            save_usage(stats, trainer.global_step, run_dir(trainer) / "usage" / name)

    def _reduce(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Pad to all K rows first: a rank that saw no batch must join the collective with the
        # same shapes as the others.
        rows = pl_module.tokenizer.max_tokens if self.per_position else 1
        counts = []
        for table in self.meter.counts:
            full = torch.zeros(rows, table.shape[1], dtype=torch.long, device=pl_module.device)
            full[: table.shape[0]] += table.to(pl_module.device)
            counts.append(trainer.strategy.reduce(full, reduce_op="sum"))
        self.meter.counts = counts


def save_usage(stats: dict[str, Any], step: int, path: Path) -> Path:
    """Write `CodebookUsage.compute()` statistics as JSON (NaN -> null), atomically."""

    def plain(value: Any) -> Any:
        value = value.tolist() if isinstance(value, Tensor) else value
        if isinstance(value, list):
            return [plain(v) for v in value]
        return None if isinstance(value, float) and math.isnan(value) else value

    record = {"step": step, **{name: plain(value) for name, value in stats.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, (json.dumps(record) + "\n").encode())


def warmup_decay(decay: float, num_averaged: int) -> float:
    """The EMA decay after `num_averaged` updates: (1 + n) / (10 + n), capped at `decay`."""
    return min(decay, (1 + num_averaged) / (10 + num_averaged))


class WarmupEMA(EMAWeightAveraging):
    """Lightning's EMA with the decay warmed up from 0.1 to `decay` (timm / diffusers style).

    With a fixed 0.999, the average of a run shorter than a few thousand steps is still mostly its
    first weights: a 2,000-step rectified-flow decoder trained from adaLN-Zero's zero heads
    exported noise (7.7 dB) while its live weights decoded at 11.6-17.2 dB. The warmed-up decay
    forgets the start after a few hundred steps and reaches `decay` where it no longer hurts.
    The update is a lerp, so the average of a frozen weight stays that weight exactly.
    """

    def __init__(self, decay: float = 0.999, **kwargs: Any) -> None:
        super().__init__(decay=decay, **kwargs)
        self.decay = decay

        def update(average: Tensor, current: Tensor, num_averaged: Tensor | int) -> Tensor:
            if not average.is_floating_point():  # integer buffers (counters): the live value
                return current
            return average.lerp(current, 1.0 - warmup_decay(self.decay, int(num_averaged)))

        self._kwargs["avg_fn"] = update  # what WeightAveraging hands to AveragedModel
