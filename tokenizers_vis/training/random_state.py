"""The random streams of a training run, carried across a `--ckpt_path` resume.

Lightning restores weights, optimizer, schedule, loops and (through `ResumableLoader`) the
position in the epoch, but not the generators: `seed_everything` at start-up rewinds torch's,
numpy's and Python's global generators, and a data set's main-process `WorkerGenerator` starts
from its seed again. A resumed run then redraws the prefix lengths of nested dropout and the
random crops of its first steps: measured on the photo64 run, step 109's mean k equalled step
9's. `RandomState` saves those generators in every checkpoint and puts them back just before
the resumed run trains, so a resumed step draws what the uninterrupted run drew.

Covered: the global generators (token drop, noise, dropout) and the `WorkerGenerator`s held by
the train data set in the main process (`num_workers: 0`, the CPU configs). Data-loader workers
seed themselves from the loader's base seed each epoch (`WorkerGenerator`), which a resume does
not replay exactly; the batches themselves (which images) are exact in both cases.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

from tokenizers_vis.data.transforms import WorkerGenerator

__all__ = ["RandomState", "dataset_generators"]

KEY = "vistok_random_state"


def dataset_generators(dataset: Any) -> list[WorkerGenerator]:
    """The `WorkerGenerator`s a data set holds (its attributes, and those of the data sets it
    concatenates), in a fixed order."""
    found: list[WorkerGenerator] = []
    for part in [dataset, *getattr(dataset, "datasets", [])]:
        found += [v for _, v in sorted(vars(part).items()) if isinstance(v, WorkerGenerator)]
    return found


def _train_dataset(trainer: L.Trainer) -> Any:
    loader = trainer.train_dataloader
    if loader is None:  # before the fit loop has built it
        return None
    loaders = loader if isinstance(loader, list | tuple) else [loader]
    return getattr(loaders[0], "dataset", None)


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
            "has_gauss": has_gauss, "gauss": gauss}  # fmt: skip


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]))


class RandomState(L.Callback):
    """Saves the run's generators in each checkpoint; restores them when a run resumes.

    Plain tensors, numbers and strings only, so a checkpoint still loads with
    `torch.load(weights_only=True)`. VistokCLI adds it to every training run.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        version, internal, gauss = random.getstate()
        dataset = _train_dataset(trainer)
        generators = [] if dataset is None else dataset_generators(dataset)
        checkpoint[KEY] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(),
            "python": {"version": version, "internal": list(internal), "gauss": gauss},
            "data": [g.get_state() for g in generators],
        }

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = checkpoint.get(KEY)  # None: a checkpoint from before this callback

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Here, not at load: the sanity check and loader set-up run between the two.
        state, self._pending = self._pending, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        _set_numpy_state(state["numpy"])
        py = state["python"]
        random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
        dataset = _train_dataset(trainer)
        generators = [] if dataset is None else dataset_generators(dataset)
        for generator, saved in zip(generators, state["data"], strict=False):
            generator.set_state(saved)
