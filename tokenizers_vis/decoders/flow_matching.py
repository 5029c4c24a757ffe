"""Rectified flow's two procedures around a velocity network: the training loss and the sampler.

Papers: rectified flow / flow matching (Liu et al., 2023; Lipman et al., 2023) with SD3's
logit-normal timesteps (Esser et al., 2024).

Convention (diffusers' flow matching): x_t = (1 - t) x + t noise, t = 1 is pure noise; the network
predicts v = noise - x, and x_t - t v is the one-step estimate of x.

Sampling goes through diffusers' `FlowMatchEulerDiscreteScheduler` /
`FlowMatchHeunDiscreteScheduler`. Euler gets its grid explicitly, N even steps from t = 1 to 0,
because diffusers' default grid ends at t = 1/1000 and spends the last of N steps on [0.001, 0].
Heun keeps diffusers' grid: N - 1 Heun steps over [1, 0.001] and a final Euler step to 0,
2N - 1 network evaluations.

diffusers is imported where it is used: every `vistok` command imports the decoder registry, and
most never build a flow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

if TYPE_CHECKING:
    from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

Sampler = Literal["euler", "heun"]
TimeSampling = Literal["logit_normal", "uniform"]
TIMESTEP_SCALE = 1000  # diffusers' schedulers use timestep = 1000 t


def randn_tensor(*args: Any, **kwargs: Any) -> Tensor:
    """diffusers' `randn_tensor` (a CPU generator works for any device), imported on first use."""
    from diffusers.utils.torch_utils import randn_tensor as diffusers_randn

    return diffusers_randn(*args, **kwargs)


def uniform(batch: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """(batch,) U[0, 1) drawn on the generator's device (global RNG without one)."""
    where = generator.device if generator is not None else device
    return torch.rand(batch, generator=generator, device=where).to(device)


def draw_time(
    batch: int, time_sampling: TimeSampling, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """(batch,) training times in (0, 1): "logit_normal" (SD3: sigmoid of a standard normal,
    which weights the middle of the path where the velocity is hardest) or "uniform"."""
    if time_sampling == "logit_normal":
        return torch.sigmoid(randn_tensor((batch,), generator=generator, device=device))
    return uniform(batch, generator, device)


def noised(
    x: Tensor, time_sampling: TimeSampling, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """A training point on the straight path from data `x` (b c s s) to noise.

    Returns:
        x_t (b c s s), t (b,) and the noise (b c s s) it was drawn with (t first, then noise,
        from `generator`).
    """
    t = draw_time(x.shape[0], time_sampling, generator, x.device)  # (b,)
    noise = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    t_ = rearrange(t, "b -> b 1 1 1").to(x.dtype)
    return (1 - t_) * x + t_ * noise, t, noise  # (b c s s), (b,), (b c s s)


def flow_loss(velocity: Tensor, x: Tensor, noise: Tensor) -> Tensor:
    """() fp32 mean squared error of the predicted velocity (b c s s) against noise - x."""
    return F.mse_loss(velocity.float(), (noise - x).float())


def one_step_estimate(x_t: Tensor, t: Tensor, velocity: Tensor) -> Tensor:
    """x_t - t v (b c s s): the data the velocity points back to, noisy at large t."""
    return x_t - rearrange(t, "b -> b 1 1 1").to(x_t.dtype) * velocity


def scheduler(
    sampler: Sampler, num_steps: int, device: torch.device
) -> FlowMatchEulerDiscreteScheduler | FlowMatchHeunDiscreteScheduler:
    """A fresh diffusers scheduler set to `num_steps` (schedulers keep per-run state)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

    if sampler == "heun":
        heun = FlowMatchHeunDiscreteScheduler(num_train_timesteps=TIMESTEP_SCALE)
        heun.set_timesteps(num_steps, device=device)
        return heun
    euler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=TIMESTEP_SCALE)
    euler.set_timesteps(sigmas=[1 - i / num_steps for i in range(num_steps)], device=device)
    return euler


def integrate(
    velocity: Callable[[Tensor, Tensor], Tensor],
    shape: tuple[int, ...],
    sampler: Sampler,
    num_steps: int,
    generator: torch.Generator,
    device: torch.device,
) -> Tensor:
    """Integrate dx/dt = velocity(x, t) from noise at t = 1 to data at t = 0.

    Args:
        velocity: (x (b c s s), t (b,)) -> (b c s s).
        shape: (b c s s) of the state.
        sampler: "euler" or "heun".
        num_steps: N (Euler: N evaluations; Heun: 2N - 1).
        generator: draws the starting noise.
        device: where the state lives.

    Returns:
        (b c s s) fp32: the ODE state stays fp32 whatever the network computes in.
    """
    x = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
    steps = scheduler(sampler, num_steps, device)
    for timestep in steps.timesteps:
        t = (timestep / TIMESTEP_SCALE).expand(shape[0])  # (b,)
        x = steps.step(velocity(x, t).float(), timestep, x).prev_sample
    return x
