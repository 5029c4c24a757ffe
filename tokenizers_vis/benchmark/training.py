"""Training images/s through Lightning (`TokenizerSystem` + `Trainer`) against a bare PyTorch
loop over the same model, batches and precision: the ratio is the framework's overhead.

Both runs start from the same weights, draw the same precomputed batches from the same
`DataLoader` and do the same work per step: forward, the system's own weighted loss terms
(`reconstruction_terms`, `weighted`), backward, gradient clipping at the system's norm, an
AdamW step (the system's optimizer factory) and a linear warm-up schedule. The Trainer runs as
`vistok train` does (precision from `lightning_precision`, a CSV logger every 25 steps as in
`configs/trainer/cpu.yaml`) without callbacks (EMA, grids, checkpoints), which are model
features a bare loop would need as well. A step's time is the interval between the ends of two
consecutive steps (data loading, hooks and logging included), after the warm-up steps; both
runs synchronise the GPU at each step's end.
"""

from __future__ import annotations

import copy
import logging
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from tokenizers_vis.benchmark.common import Context, smooth_images, sync
from tokenizers_vis.precision import autocast, lightning_precision

GOAL = 0.95


class _Batches(Dataset):
    """A list of ready batches, served as they are (`DataLoader(batch_size=None)`)."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches[index]


def make_batches(data: str, size: int, batch: int, count: int) -> tuple[list, str]:
    """`count` batches (images (b 3 s s) in [-1, 1], labels (b,)) of the emoji training split,
    cycled where it is too short, or synthetic ones; returns them and what they are."""
    images = None
    if data == "emoji":
        try:
            from tokenizers_vis.data.build import build_dataset

            dataset = build_dataset("emoji", "train", size)
            images = torch.stack([dataset[i % len(dataset)][0] for i in range(batch * count)])
            source = f"emoji train split at {size} px"
        except (OSError, ValueError) as err:  # no font installed, say
            source = f"synthetic (emoji unavailable: {err})"
    else:
        source = "synthetic smooth images"
    if images is None:
        images = smooth_images(batch * count, size)
    labels = torch.zeros(batch, dtype=torch.int64)
    return [(images[i * batch : (i + 1) * batch], labels) for i in range(count)], source


def _intervals(ends: list[float], warmup: int) -> list[float]:
    """Durations of the steps after the first `warmup` (each from the previous step's end)."""
    return [b - a for a, b in zip(ends[warmup:-1], ends[warmup + 1 :], strict=True)]


def bare_loop(system: Any, loader: DataLoader, ctx: Context) -> list[float]:
    """The system's training step without Lightning; returns the start time and the end time
    of every step."""
    device, precision = ctx.device, ctx.precision.name
    tok = system.to(device).train().tokenizer  # the system too: its loss terms use its device
    params = [p for p in tok.parameters() if p.requires_grad]
    opt = system.optimizer_factory(params)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / system.hparams.warmup_steps)
    )
    ends = [time.perf_counter()]
    for images, _ in loader:
        images = images.to(device)
        with autocast(device, precision):
            out = tok(images)
            terms = {**system.reconstruction_terms(out.images, images), **out.losses}
            loss = system.weighted(terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if system.hparams.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, system.hparams.grad_clip)
        opt.step()
        schedule.step()
        loss.detach()
        sync(device)
        ends.append(time.perf_counter())
    return ends


def lightning_loop(system: Any, loader: DataLoader, ctx: Context, root: str) -> list[float]:
    """`Trainer.fit` of the system over the loader; returns the start time and the end time of
    every step."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    ends: list[float] = []

    class StepEnds(L.Callback):
        def on_train_start(self, trainer: Any, module: Any) -> None:
            ends.append(time.perf_counter())

        def on_train_batch_end(self, *args: Any) -> None:
            sync(ctx.device)
            ends.append(time.perf_counter())

    accelerator = "gpu" if ctx.device.type == "cuda" else "cpu"
    precision, _ = lightning_precision(ctx.precision.name, accelerator)
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, precision=precision, max_steps=len(loader),
        max_epochs=1, logger=CSVLogger(root, name="logs"), log_every_n_steps=25,
        callbacks=[StepEnds()], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=root,
    )  # fmt: skip
    trainer.fit(system, train_dataloaders=loader)
    return ends


def run_training(
    ctx: Context, model: str, batch: int, steps: int, warmup: int, data: str = "emoji"
) -> dict[str, Any]:
    """Training images/s of preset `model`, Lightning and bare, and their ratio: the median
    step of `steps` timed steps after `warmup` untimed ones."""
    from tokenizers_vis.training.system import TokenizerSystem

    torch.manual_seed(0)
    system = TokenizerSystem(tokenizer=model)
    state = copy.deepcopy(system.state_dict())
    size = system.tokenizer.image_size
    batches, source = make_batches(data, size, batch, warmup + steps)
    loader = DataLoader(_Batches(batches), batch_size=None, shuffle=False)
    results = {}
    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="vistok-bench-") as root:
        for noise in ("does not have many workers", "GPU available", "no `val_dataloader`",
                      "smaller than the logging interval", "LeafSpec"):  # fmt: skip
            warnings.filterwarnings("ignore", message=f".*{noise}.*")
        quiet.setLevel(logging.WARNING)
        try:
            for name in ("bare", "lightning"):
                torch.manual_seed(0)  # the same token-drop draws in both runs
                system.load_state_dict(state)
                if name == "bare":
                    ends = bare_loop(system, loader, ctx)
                else:
                    ends = lightning_loop(system, loader, ctx, root)
                seconds = statistics.median(_intervals(ends, warmup))
                results[name] = {"images_per_s": batch / seconds, "seconds_per_step": seconds}
        finally:
            quiet.setLevel(level)
    ratio = results["lightning"]["images_per_s"] / results["bare"]["images_per_s"]
    record = {
        "model": model, "batch": batch, "warmup_steps": warmup, "steps": steps, "data": source,
        "lightning_precision": lightning_precision(ctx.precision.name, ctx.device.type)[0],
        "lightning_images_per_s": results["lightning"]["images_per_s"],
        "bare_images_per_s": results["bare"]["images_per_s"],
        "lightning_seconds_per_step": results["lightning"]["seconds_per_step"],
        "bare_seconds_per_step": results["bare"]["seconds_per_step"],
        "ratio": ratio, "goal": GOAL, "meets_goal": ratio >= GOAL,
    }  # fmt: skip
    return {"records": [ctx.stamp(record)]}
