"""Throughput logging and the wall-clock budget (tokenizers_vis/training/throughput.py)."""

import json

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from tokenizers_vis.training.throughput import Throughput, TimeBudget


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
    meter = Throughput(skip_steps=2, every_n_steps=5)
    trainer = _trainer(tmp_path, [budget, meter], max_steps=10_000_000)
    trainer.fit(BoringModel())
    assert budget.fitted_steps, "the budget never refitted max_steps"
    assert trainer.max_steps == budget.fitted_steps[-1] < 10_000_000
    assert trainer.global_step <= trainer.max_steps
    info = json.loads((tmp_path / "logs" / "version_0" / "throughput.json").read_text())
    assert info["timed_steps"] > 0 and info["samples_per_s"] > 0
    assert info["global_step"] == trainer.global_step
    logged = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text()
    assert "perf/samples_per_s" in logged


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError):
        TimeBudget(seconds=0)
    with pytest.raises(ValueError):
        TimeBudget(seconds=10, measure_from=5, measure_to=5)
    with pytest.raises(ValueError):
        Throughput(every_n_steps=0)
