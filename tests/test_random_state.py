"""RandomState: the generators a resumed run needs, saved as plain tensors and put back."""

import io
import random
from types import SimpleNamespace

import numpy as np
import torch

from tokenizers_vis.data.transforms import WorkerGenerator
from tokenizers_vis.training.random_state import KEY, RandomState, dataset_generators


class _Data:
    def __init__(self) -> None:
        self._rng = WorkerGenerator(3)


class _Trainer:
    def __init__(self, dataset) -> None:
        self.train_dataloader = SimpleNamespace(dataset=dataset)


def _draws(data: _Data) -> tuple:
    return (
        torch.rand(3).tolist(),
        np.random.rand(2).tolist(),
        random.random(),
        torch.rand(2, generator=data._rng()).tolist(),
    )


def test_a_restored_run_draws_what_the_uninterrupted_one_drew():
    data = _Data()
    data._rng()  # the main-process stream has started
    trainer = _Trainer(data)
    callback, checkpoint = RandomState(), {}
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    _draws(data)
    callback.on_save_checkpoint(trainer, None, checkpoint)
    torch.save(checkpoint, buffer := io.BytesIO())
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # plain data only
    expected = _draws(data)
    torch.manual_seed(0), np.random.seed(0), random.seed(0)  # what seed_everything does
    fresh = _Data()
    callback.on_load_checkpoint(trainer, None, loaded)
    callback.on_train_start(_Trainer(fresh), None)
    assert _draws(fresh) == expected
    assert KEY in checkpoint and dataset_generators(fresh) == [fresh._rng]


def test_checkpoints_without_the_state_resume_as_before():
    callback = RandomState()
    callback.on_load_checkpoint(None, None, {})
    before = torch.get_rng_state()
    callback.on_train_start(_Trainer(_Data()), None)
    assert torch.equal(torch.get_rng_state(), before)
