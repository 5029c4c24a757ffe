"""Rectified-flow decoder: a DiT velocity network conditioned on a token prefix, sampled in steps.

Papers: Bachmann et al., "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length"
(2025) decode 1D tokens with a rectified-flow transformer. The flow is rectified flow / flow
matching (Liu et al., 2023; Lipman et al., 2023) with SD3's logit-normal timesteps (Esser et al.,
2024); the blocks are DiT's adaLN-Zero (Peebles & Xie, 2023); guidance is classifier-free (Ho &
Salimans, 2022); an optional REPA term aligns one layer with a frozen teacher (Yu et al., 2025).

Why a generative decoder: given 4 tokens a deterministic decoder returns the blurry mean of every
image they could mean; this one samples one sharp image consistent with them.

Conditioning: the tokens join the noisy patches in one self-attention sequence [patches, tokens]
(FlexTok's choice) rather than cross-attention. K tokens are few next to the patches, so the
cost is small; every layer lets patches and tokens read each other with one set of weights; and a
truncated tail (tail drop) is hidden by the same key mask as in the deterministic ViT decoder, so
mixed prefix lengths share a batch. A nested-dropout tail arrives as the token drop's learned
mask token. The null condition of classifier-free guidance is one more learned token that fills
every token slot of a dropped sample.

Convention (diffusers' flow matching): x_t = (1 - t) x + t noise, t = 1 is pure noise; the network
predicts v = noise - x, and x_t - t v is the one-step estimate of x.

What we changed: pixel space by default (small images), optionally the latent space of a local,
frozen diffusers `AutoencoderKL`; the training code (FlexTok's is unreleased); sampling through
diffusers' `FlowMatchEulerDiscreteScheduler` / `FlowMatchHeunDiscreteScheduler`. Euler gets its
grid explicitly, N even steps from t = 1 to 0, because diffusers' default grid ends at t = 1/1000
and spends the last of N steps on [0.001, 0]. Heun keeps diffusers' grid: N - 1 Heun steps over
[1, 0.001] and a final Euler step to 0, 2N - 1 network evaluations.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import PatchEmbed
from torch import Tensor, nn

from tokenizers_vis.decoders.base import DecoderOutput
from tokenizers_vis.layers.adaln import AdaLNFinal, AdaLNZeroBlock
from tokenizers_vis.layers.repa import RepaProjector, repa_cosine_distance
from tokenizers_vis.layers.transformer import init_weights, learned_positions
from tokenizers_vis.registry import DECODERS

Sampler = Literal["euler", "heun"]
TimeSampling = Literal["logit_normal", "uniform"]
# diffusers is imported where it is used: every `vistok` command imports the decoder registry,
# and most never build this decoder.
if TYPE_CHECKING:
    from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

TIMESTEP_SCALE = 1000  # diffusers' schedulers use timestep = 1000 t


def uniform(batch: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """(batch,) U[0, 1) drawn on the generator's device (global RNG without one)."""
    where = generator.device if generator is not None else device
    return torch.rand(batch, generator=generator, device=where).to(device)


@DECODERS.register("rectified_flow")
class RectifiedFlowDecoder(nn.Module):
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
        vae: a local directory holding a diffusers `AutoencoderKL` (config.json + weights): the
            flow runs in its latent space. Frozen and kept out of this module's state dict (it
            reloads from its own directory). None: pixel space.
        repa_layer: read the patches' hidden states after this many blocks for REPA (1..depth);
            None disables REPA. Needs a teacher (`attach_teacher`) while training.
        repa_dim: the teacher's feature size (the projector's output; 2048 for the default
            pooled Inception teacher).
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
        vae: str | None = None,
        repa_layer: int | None = None,
        repa_dim: int = 2048,
    ) -> None:
        super().__init__()
        if sampler not in ("euler", "heun"):
            raise ValueError(f"sampler must be 'euler' or 'heun', got {sampler!r}")
        if time_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"time_sampling must be logit_normal|uniform, got {time_sampling!r}")
        if not 0 <= cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {cond_dropout}")
        if repa_layer is not None and not 1 <= repa_layer <= depth:
            raise ValueError(f"repa_layer must be in 1..{depth}, got {repa_layer}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.num_steps, self.sampler, self.guidance_scale = num_steps, sampler, guidance_scale
        self.cond_dropout, self.time_sampling = cond_dropout, time_sampling
        self.repa_layer, self.repa_dim = repa_layer, repa_dim
        self.vae = vae
        self._vae_config = vae_config(vae) if vae else None
        self._vae: list[nn.Module] = []  # loaded on first use, out of the state dict
        self._teacher: list[Callable[[Tensor], Tensor]] = []
        self.channels, size = self._space(image_size)
        if size % patch_size:
            space = "latent" if vae else "image"
            raise ValueError(f"{space} size {size} is not a multiple of patch_size {patch_size}")
        self.size, self.patch_size, self.grid = size, patch_size, size // patch_size
        self.patch_embed = PatchEmbed(size, patch_size, self.channels, width)
        self.patch_positions = learned_positions(self.grid * self.grid, width)
        self.token_in = nn.Linear(in_dim, width)
        self.token_positions = learned_positions(num_tokens, width)
        self.null_token = learned_positions(1, width)  # (1 1 w) the CFG null condition
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, width)
        self.blocks = nn.ModuleList(
            AdaLNZeroBlock(width, num_heads, mlp_ratio, qk_norm) for _ in range(depth)
        )
        self.final = AdaLNFinal(width, patch_size * patch_size * self.channels)
        self.repa_projector = RepaProjector(width, repa_dim) if repa_layer else None
        # ViT init for the linears only: the modulated LayerNorms have no affine parameters.
        self.apply(lambda m: init_weights(m) if isinstance(m, nn.Linear) else None)
        conv = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(rearrange(conv, "o i ph pw -> o (i ph pw)"))  # DiT
        for block in (*self.blocks, self.final):
            block.zero_init()

    @property
    def last_layer(self) -> Tensor:
        """Weight of the output head (the adaptive GAN weight balances gradients here)."""
        return self.final.linear.weight

    def attach_teacher(self, teacher: Callable[[Tensor], Tensor]) -> None:
        """Frozen REPA teacher: images (b 3 h w) in [-1, 1] -> features (b repa_dim h' w') or
        pooled (b repa_dim), without gradient (e.g. `losses.semantic`'s cached teachers).

        Held outside the state dict; a module is frozen and moved to the images' device.
        """
        if self.repa_layer is None:
            raise ValueError("this decoder has no REPA projector: set repa_layer in its spec")
        features = getattr(teacher, "num_features", self.repa_dim)
        if features != self.repa_dim:
            raise ValueError(f"the REPA teacher gives {features} features; set repa_dim to it")
        if isinstance(teacher, nn.Module):
            teacher.eval().requires_grad_(False)
        self._teacher[:] = [teacher]

    # ------------------------------------------------------------------------------ the network
    def velocity(
        self,
        x_t: Tensor,
        t: Tensor,
        tokens: Tensor,
        key_mask: Tensor | None = None,
        drop: Tensor | None = None,
    ) -> Tensor:
        """Predicted velocity (b c s s) at x_t (b c s s), t (b,) in [0, 1].

        Args:
            tokens: (b n d) the condition; key_mask (b n) True = visible, None = all.
            drop: (b,) bool, True where the null condition replaces the tokens.
        """
        return self._run(x_t, t, tokens, key_mask, drop)[0]

    def guided_velocity(
        self,
        x_t: Tensor,
        t: Tensor,
        tokens: Tensor,
        key_mask: Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> Tensor:
        """Classifier-free guidance: v_null + scale (v_cond - v_null), both in one batch.

        Scale 1 is the conditional prediction itself (one pass, no null condition).
        """
        if guidance_scale == 1.0:
            return self.velocity(x_t, t, tokens, key_mask)
        b = x_t.shape[0]
        drop = torch.arange(2 * b, device=x_t.device) >= b  # (2b,) second half: null condition

        def twice(x: Tensor | None) -> Tensor | None:
            return None if x is None else torch.cat([x, x])

        v = self.velocity(twice(x_t), twice(t), twice(tokens), twice(key_mask), drop)
        cond, null = rearrange(v, "(two b) c h w -> two b c h w", two=2)
        return null + guidance_scale * (cond - null)  # (b c s s)

    def _run(
        self, x_t: Tensor, t: Tensor, tokens: Tensor, key_mask: Tensor | None, drop: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """-> velocity (b c s s), REPA hidden states (b p w) or None."""
        b, n, _ = tokens.shape
        patches = self.patch_embed(x_t) + self.patch_positions  # (b p w)
        cond = self.token_in(tokens) + self.token_positions[:, :n]  # (b n w)
        if drop is not None:
            null = rearrange(drop, "b -> b 1 1")
            # torch.where also when no sample drops: the null token stays in the graph (DDP).
            cond = torch.where(null, self.null_token.to(cond.dtype), cond)  # (b n w)
            if key_mask is not None:
                key_mask = key_mask | rearrange(drop, "b -> b 1")  # null slots are all visible
        time = self.time_embed(self.time_proj(t * TIMESTEP_SCALE).to(patches.dtype))  # (b w)
        attn_mask = None
        if key_mask is not None:
            keys = torch.cat([key_mask.new_ones(b, patches.shape[1]), key_mask], 1)  # (b p+n)
            attn_mask = rearrange(keys, "b l -> b 1 1 l")  # every query, same keys
        x = torch.cat([patches, cond], dim=1)  # (b p+n w)
        hidden = None
        for depth, block in enumerate(self.blocks, start=1):
            x = block(x, time, attn_mask)
            if depth == self.repa_layer:
                hidden = x[:, : patches.shape[1]]  # (b p w)
        out = self.final(x[:, : patches.shape[1]], time)  # (b p (ph pw c))
        v = rearrange(
            out,
            "b (gh gw) (ph pw c) -> b c (gh ph) (gw pw)",
            gh=self.grid,
            ph=self.patch_size,
            pw=self.patch_size,
        )
        return v, hidden

    # ---------------------------------------------------------------------------------- training
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
            pixel space; decoded through the frozen VAE without gradient in latent space), and
            the unweighted terms "flow/mse" and, with REPA, "repa/cosine_distance".
        """
        if images is None:
            raise ValueError("the rectified-flow decoder learns from the images: pass images=")
        if generator is None and not self.training:
            generator = torch.Generator().manual_seed(0)
        x = self.to_space(images)  # (b c s s) the flow's data end
        b, device = x.shape[0], x.device
        if self.time_sampling == "logit_normal":
            t = torch.sigmoid(randn_tensor((b,), generator=generator, device=device))
        else:
            t = uniform(b, generator, device)  # (b,)
        noise = randn_tensor(x.shape, generator=generator, device=device, dtype=x.dtype)
        t_ = rearrange(t, "b -> b 1 1 1").to(x.dtype)
        x_t = (1 - t_) * x + t_ * noise  # (b c s s)
        drop = uniform(b, generator, device) < self.cond_dropout if self.training else None
        v, hidden = self._run(x_t, t, tokens, key_mask, drop)
        losses = {"flow/mse": F.mse_loss(v.float(), (noise - x).float())}
        if self.repa_layer is not None and self.training:
            losses["repa/cosine_distance"] = self._repa(hidden, images)
        estimate = x_t - t_ * v  # (b c s s)
        if self.vae is not None:
            with torch.no_grad():
                estimate = self.from_space(estimate)
        return DecoderOutput(images=estimate, losses=losses)

    def _repa(self, hidden: Tensor, images: Tensor) -> Tensor:
        if not self._teacher:
            raise RuntimeError(
                "repa_layer is set but no teacher is attached: TokenizerSystem attaches one "
                "(repa_teacher); elsewhere call decoder.attach_teacher(module)"
            )
        teacher = self._teacher[0]
        if isinstance(teacher, nn.Module):
            teacher.to(images.device)
        with torch.no_grad():
            target = teacher(images)  # (b d h' w')
        return repa_cosine_distance(self.repa_projector(hidden), target, (self.grid, self.grid))

    # ---------------------------------------------------------------------------------- sampling
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
        b, device = tokens.shape[0], tokens.device
        shape = (b, self.channels, self.size, self.size)
        x = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        scheduler = self.scheduler(steps, device)
        for timestep in scheduler.timesteps:
            t = (timestep / TIMESTEP_SCALE).expand(b)  # (b,)
            v = self.guided_velocity(x, t, tokens, key_mask, scale)
            x = scheduler.step(v.float(), timestep, x).prev_sample  # the ODE state stays fp32
        return self.from_space(x)

    def scheduler(
        self, num_steps: int, device: torch.device
    ) -> FlowMatchEulerDiscreteScheduler | FlowMatchHeunDiscreteScheduler:
        """A fresh diffusers scheduler set to `num_steps` (schedulers keep per-run state)."""
        from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler

        if self.sampler == "heun":
            scheduler = FlowMatchHeunDiscreteScheduler(num_train_timesteps=TIMESTEP_SCALE)
            scheduler.set_timesteps(num_steps, device=device)
            return scheduler
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=TIMESTEP_SCALE)
        scheduler.set_timesteps(sigmas=[1 - i / num_steps for i in range(num_steps)], device=device)
        return scheduler

    # ------------------------------------------------------------------------ pixel/latent space
    def _space(self, image_size: int) -> tuple[int, int]:
        """(channels, side) of the space the flow runs in."""
        if self._vae_config is None:
            return 3, image_size
        factor = 2 ** (len(self._vae_config["block_out_channels"]) - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} is not a multiple of the VAE's {factor}")
        return self._vae_config["latent_channels"], image_size // factor

    def autoencoder(self, device: torch.device) -> nn.Module:
        """The frozen VAE on `device`, loaded from `vae` on first use (so building this module
        on the meta device, as pretrained loading does to check shapes, reads no weights)."""
        if not self._vae:
            self._vae.append(load_vae(self.vae))
        return self._vae[0].to(device)

    def to_space(self, images: Tensor) -> Tensor:
        """images (b 3 h w) in [-1, 1] -> the flow's data (b c s s); latents are the VAE's mean."""
        if self.vae is None:
            return images
        vae = self.autoencoder(images.device)
        with torch.no_grad():
            z = vae.encode(images).latent_dist.mode()
        return (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def from_space(self, x: Tensor) -> Tensor:
        """The flow's data (b c s s) -> images (b 3 h w), unclamped."""
        if self.vae is None:
            return x
        vae = self.autoencoder(x.device)
        z = x / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        return vae.decode(z.to(next(vae.parameters()).dtype)).sample


def vae_config(directory: str) -> dict[str, Any]:
    """The `AutoencoderKL` config in a local directory (FileNotFoundError if there is none)."""
    from diffusers import AutoencoderKL

    if not (Path(directory) / "config.json").is_file():
        raise FileNotFoundError(f"vae: no AutoencoderKL config.json in {directory}")
    return dict(AutoencoderKL.load_config(directory, local_files_only=True))


def load_vae(directory: str) -> nn.Module:
    """A frozen diffusers `AutoencoderKL` from a local directory (never downloads), on the CPU
    whatever the ambient default device."""
    from diffusers import AutoencoderKL

    with torch.device("cpu"):
        vae = AutoencoderKL.from_pretrained(directory, local_files_only=True)
    return vae.eval().requires_grad_(False)


def randn_tensor(*args: Any, **kwargs: Any) -> Tensor:
    """diffusers' `randn_tensor` (a CPU generator works for any device), imported on first use."""
    from diffusers.utils.torch_utils import randn_tensor as diffusers_randn

    return diffusers_randn(*args, **kwargs)
