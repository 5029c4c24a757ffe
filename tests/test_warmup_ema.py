"""WarmupEMA: the decay warms up (a short run's average is not its initial weights) and a weight
that never changes averages to itself exactly."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

from tokenizers_vis.training.callbacks import WarmupEMA, warmup_decay


def test_decay_warms_up_to_its_cap() -> None:
    assert warmup_decay(0.999, 0) == 0.1
    assert warmup_decay(0.999, 90) == 91 / 100
    assert warmup_decay(0.999, 10**6) == 0.999


def test_short_run_forgets_the_start_and_frozen_weights_stay_exact() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    model.weight.requires_grad_(False)  # "frozen": never changes
    frozen = model.weight.detach().clone()
    start = model.bias.detach().clone()
    avg = AveragedModel(model, avg_fn=WarmupEMA(decay=0.999)._kwargs["avg_fn"], use_buffers=True)
    plain = AveragedModel(model, avg_fn=torch.optim.swa_utils.get_ema_avg_fn(0.999))
    avg.update_parameters(model)  # the first update copies: both start from the early weights
    plain.update_parameters(model)
    for _ in range(300):
        with torch.no_grad():
            model.bias.copy_(start + 1.0)  # the trained value, far from the start
        avg.update_parameters(model)
        plain.update_parameters(model)
    assert torch.equal(avg.module.weight, frozen)
    # 300 updates: the warmed-up average is within 4% of the trained value; a fixed 0.999 still
    # holds ~74% of the start (0.999 ** 300).
    assert (avg.module.bias - model.bias).abs().max() < 0.04
    assert (plain.module.bias - model.bias).abs().max() > 0.7
