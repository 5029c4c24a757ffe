"""Rectified-flow decoder: a token-conditioned velocity network, trained by flow matching and
sampled in steps.

Paper: Bachmann et al., "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length"
(2025) decode 1D tokens with a rectified-flow transformer.

Why a generative decoder: given 4 tokens a deterministic decoder returns the blurry mean of every
image they could mean; this one samples one sharp image consistent with them.

The decoder is assembled from three concepts, one file each:
  * `flow_network.FlowTransformer`: the DiT that predicts velocities (the decoder subclasses
    it, so its weights and their keys are the network's own);
  * `flow_matching`: the training loss and the sampler (diffusers' flow-matching schedulers);
  * `latent_space.FlowSpace`: pixels, or the latents of a local, frozen diffusers VAE.

What we changed: pixel space by default (small images); the training code (FlexTok's is
unreleased); an optional REPA projector whose features the training system aligns with a teacher.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from tokenizers_vis.decoders import flow_matching as flow
from tokenizers_vis.decoders.base import Decoder, DecoderOutput
from tokenizers_vis.decoders.flow_matching import Sampler, TimeSampling
from tokenizers_vis.decoders.flow_network import FlowTransformer
from tokenizers_vis.decoders.latent_space import FlowSpace
from tokenizers_vis.registry import DECODERS


@DECODERS.register("rectified_flow")
class RectifiedFlowDecoder(Decoder, FlowTransformer):
    """tokens (b n d) -> images (b 3 h w), by integrating a learned velocity field from noise.

    Args:
        image_size: output size; set by the tokenizer.
        num_tokens: K; set by the tokenizer.
        in_dim: code dimension; set by the tokenizer.
        patch_size: patch size on the pixel (or latent) grid.
        width, depth, num_heads, mlp_ratio, qk_norm: transformer shape.
        num_steps: sampling steps when the caller gives none.
        sampler: "euler" or "heun" (diffusers' flow-matching schedulers).
        guidance_scale: classifier-free guidance at sampling when the caller gives none; 1 = off.
        cond_dropout: fraction of training samples whose tokens become the null condition.
        time_sampling: training distribution of t: "logit_normal" (SD3, mean 0, std 1; weights
            the middle of the path where the velocity is hardest) or "uniform".
        vae: the flow runs in a frozen VAE's latent space: a local directory holding a diffusers
            `AutoencoderKL` (config.json + weights; kept out of this module's state dict, it
            reloads from its own directory), or `layers.vae` keyword arguments (a VAE whose
            halves are part of the state dict, so a converted FlexTok is self-contained; the
            encoder half encodes training targets). None: pixel space.
        repa_layer: project the patches' hidden states after this many blocks (1..depth) into
            `DecoderOutput.features` for REPA; None disables it. The training system owns the
            loss and its teacher.
        repa_dim: the teacher's feature size (the projector's output; 2048 for the default
            pooled Inception teacher).
        positions, mlp, bias, qk_norm_affine, norm_eps, time_scale, time_max_period, mask_token:
            network options (`flow_network.FlowTransformer`) the published FlexTok decoders use.
    """

    # Samples one of many images a prefix could mean: `sample` depends on the generator and the
    # number of steps, so eval and the codec pass both explicitly.
    generative: ClassVar[bool] = True

    def __init__(
        self,
        image_size: int,
        num_tokens: int,
        in_dim: int,
        patch_size: int = 4,
        width: int = 384,
        depth: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        num_steps: int = 25,
        sampler: Sampler = "euler",
        guidance_scale: float = 1.0,
        cond_dropout: float = 0.1,
        time_sampling: TimeSampling = "logit_normal",
        vae: str | dict[str, Any] | None = None,
        repa_layer: int | None = None,
        repa_dim: int = 2048,
        positions: Literal["learned", "sincos2d"] = "learned",
        mlp: Literal["gelu", "swiglu"] = "gelu",
        bias: bool = True,
        qk_norm_affine: bool = True,
        norm_eps: float | None = None,
        time_scale: float = flow.TIMESTEP_SCALE,
        time_max_period: float = 10000.0,
        mask_token: bool = False,
    ) -> None:
        if sampler not in ("euler", "heun"):
            raise ValueError(f"sampler must be 'euler' or 'heun', got {sampler!r}")
        if time_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"time_sampling must be logit_normal|uniform, got {time_sampling!r}")
        if not 0 <= cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {cond_dropout}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        space = FlowSpace(image_size, vae)
        if space.size % patch_size:
            where = "latent" if vae else "image"
            raise ValueError(
                f"{where} size {space.size} is not a multiple of patch_size {patch_size}"
            )
        super().__init__(
            space.size, space.channels, num_tokens, in_dim, patch_size, width, depth, num_heads,
            mlp_ratio, qk_norm, repa_layer, repa_dim, positions, mlp, bias, qk_norm_affine,
            norm_eps, time_scale, time_max_period, mask_token,
        )  # fmt: skip
        self.num_steps, self.sampler, self.guidance_scale = num_steps, sampler, guidance_scale
        self.cond_dropout, self.time_sampling = cond_dropout, time_sampling
        self.vae, self.space = vae, space
        if isinstance(vae, dict):  # registered after the network so its init leaves them alone
            self.latent_vae = space.build_modules()

    @property
    def last_layer(self) -> Tensor:
        """Weight of the output head (the adaptive GAN weight balances gradients here)."""
        return self.final.linear.weight

    @property
    def feature_dim(self) -> int | None:
        """Channels of `DecoderOutput.features` (the REPA projection), None without one."""
        return self.repa_dim if self.repa_layer is not None else None

    def forward(
        self,
        tokens: Tensor,
        key_mask: Tensor | None = None,
        images: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput:
        """Flow-matching loss on `images` (b 3 h w) given tokens (b n d), key_mask (b n).

        Randomness (t, noise, condition dropout) comes from `generator`; without one, training
        uses the global RNG (seeded by the trainer, as token drop does) and eval mode a fixed
        seed, so validation losses compare across steps.

        Returns:
            DecoderOutput with `images` (b 3 h w), the one-step estimate x_t - t v (attached in
            pixel space; decoded through the frozen VAE without gradient in latent space), the
            unweighted term "flow/mse", and with `repa_layer` the projected `features`.
        """
        if images is None:
            raise ValueError("the rectified-flow decoder learns from the images: pass images=")
        if generator is None and not self.training:
            generator = torch.Generator().manual_seed(0)
        x = self.space.encode(images)  # (b c s s) the flow's data end
        x_t, t, noise = flow.noised(x, self.time_sampling, generator)  # (b c s s), (b,), ..
        drop = None
        if self.training:
            drop = flow.uniform(x.shape[0], generator, x.device) < self.cond_dropout  # (b,)
        v, features = self.run(x_t, t, tokens, key_mask, drop)  # (b c s s)
        estimate = flow.one_step_estimate(x_t, t, v)  # (b c s s)
        if self.vae is not None:
            with torch.no_grad():
                estimate = self.space.decode(estimate)
        losses = {"flow/mse": flow.flow_loss(v, x, noise)}
        return DecoderOutput(images=estimate, losses=losses, features=features)

    @torch.no_grad()
    def sample(
        self,
        tokens: Tensor,
        key_mask: Tensor | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        guidance_scale: float | None = None,
    ) -> Tensor:
        """tokens (b n d), key_mask (b n) -> images (b 3 h w), integrated from noise at t = 1.

        Without a generator the noise is seeded with 0: decoding is then a function of the
        tokens (a token file decodes to the same image every time). Defaults for `num_steps` and
        `guidance_scale` come from the spec.
        """
        steps = self.num_steps if num_steps is None else num_steps
        if steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {steps}")
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        shape = (tokens.shape[0], self.channels, self.size, self.size)

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return self.guided_velocity(x, t, tokens, key_mask, scale)

        x = flow.integrate(velocity, shape, self.sampler, steps, generator, tokens.device)
        return self.space.decode(x)

    def scheduler(self, num_steps: int, device: torch.device) -> object:
        """A fresh diffusers scheduler of this decoder's sampler set to `num_steps`."""
        return flow.scheduler(self.sampler, num_steps, device)
