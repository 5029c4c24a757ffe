"""The wall-clock budget and the batch size Lightning's ThroughputMonitor reads
(tokenizers_vis/training/throughput.py)."""

import csv

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.demos.boring_classes import BoringModel

from tokenizers_vis.training.throughput import TimeBudget, batch_size


def _trainer(tmp_path, callbacks, max_steps):
    return L.Trainer(
        max_steps=max_steps,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2,
        val_check_interval=20,
        accelerator="cpu",
    )


def test_time_budget_fits_max_steps_and_stops(tmp_path):
    budget = TimeBudget(seconds=1.5, measure_from=2, measure_to=10)
    meter = ThroughputMonitor(batch_size_fn=batch_size, window_size=5)
    trainer = _trainer(tmp_path, [budget, meter], max_steps=10_000_000)
    trainer.fit(BoringModel())
    assert budget.fitted_steps, "the budget never refitted max_steps"
    assert trainer.max_steps == budget.fitted_steps[-1] < 10_000_000
    assert trainer.global_step <= trainer.max_steps
    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        rates = [float(r[KEY]) for r in csv.DictReader(f) if r.get(KEY)]
    assert rates and min(rates) > 0  # the meter counted our batches


KEY = "train/device/samples_per_sec"


def test_batch_size_reads_images_or_pairs():
    images = torch.zeros(3, 3, 8, 8)
    assert batch_size(images) == 3
    assert batch_size((images, torch.zeros(3))) == 3
    assert batch_size([images[:2]]) == 2


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError):
        TimeBudget(seconds=0)
    with pytest.raises(ValueError):
        TimeBudget(seconds=10, measure_from=5, measure_to=5)


def _fit_system(tmp_path, callbacks):
    from torch.utils.data import DataLoader, TensorDataset

    from tokenizers_vis.training.system import TokenizerSystem

    torch.manual_seed(0)
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    system = TokenizerSystem("tiny_cpu_fsq", warmup_steps=1)
    trainer = L.Trainer(
        max_steps=4, callbacks=callbacks, default_root_dir=tmp_path, log_every_n_steps=1,
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="logs"), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        accelerator="cpu",
    )  # fmt: skip
    trainer.fit(system, DataLoader(TensorDataset(images, torch.zeros(8)), batch_size=4))
    return system, images[:4]


def test_tokenizer_system_counts_its_step_flops_for_the_monitor(tmp_path):
    from tokenizers_vis.flops import count_flops

    meter = ThroughputMonitor(batch_size_fn=batch_size, window_size=2)
    system, batch = _fit_system(tmp_path, [meter])
    forward = count_flops(lambda: system.tokenizer(batch))  # the same model, one forward
    # One step: the forward, then a backward of about twice its FLOPs.
    assert 2.5 * forward < system.flops_per_batch < 3.5 * forward
    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        rates = [float(r[FLOPS]) for r in csv.DictReader(f) if r.get(FLOPS)]
    assert rates and min(rates) > 0  # the monitor read and used them


FLOPS = "train/device/flops_per_sec"


def test_no_flops_are_counted_without_the_monitor(tmp_path):
    system, _ = _fit_system(tmp_path, [])
    assert system.flops_per_batch is None
