"""TokenizerSystem: the LightningModule that trains a `Tokenizer`.

The system owns everything that is about training rather than the model: loss weights, the
discriminator, optimizers and schedules, and validation at several prefix lengths. Components return
unweighted named terms; the weights live here, once.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from einops import rearrange
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from tokenizers_vis.flops import flop_counter
from tokenizers_vis.layers.repa import repa_cosine_distance
from tokenizers_vis.losses.adversarial import (
    PatchDiscriminator,
    adaptive_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from tokenizers_vis.losses.feature_cache import FeatureCache
from tokenizers_vis.losses.semantic import build_alignment
from tokenizers_vis.losses.teachers import build_teacher
from tokenizers_vis.metrics.reconstruction import psnr
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.quantizers import QuantizerOutput, sub_codes
from tokenizers_vis.tokenizer import Tokenizer, Tokens, prefix_lengths
from tokenizers_vis.training.loss_weights import LossWeightError, check_loss_weights, weigh
from tokenizers_vis.training.warm_start import check_parts, warm_start


def adamw(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Default optimizer: AdamW with the betas ViT tokenizers train with."""
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=1e-4)


def adamw_discriminator(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.5, 0.9), weight_decay=1e-4)


ADVERSARIAL = {"start_step": 0, "adaptive": True, "channels": 64, "layers": 3}  # the defaults


def adversarial_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    """`settings` over the `ADVERSARIAL` defaults; unknown keys are refused."""
    unknown = sorted(set(settings or {}) - set(ADVERSARIAL))
    if unknown:
        raise ValueError(f"adversarial: unknown keys {unknown}; known: {', '.join(ADVERSARIAL)}")
    return {**ADVERSARIAL, **(settings or {})}


class TokenizerSystem(L.LightningModule):
    """Train a tokenizer with reconstruction, perceptual, quantizer and (optionally) GAN losses.

    Args:
        tokenizer: a preset name or a full tokenizer spec (`Tokenizer(**spec)`).
        optimizer: factory for the tokenizer's optimizer (LightningCLI fills it from YAML).
        disc_optimizer: factory for the discriminator's optimizer.
        warmup_steps: linear learning-rate warm-up.
        lr_decay: "cosine" to `min_lr_ratio` at `trainer.max_steps`, or "constant".
        min_lr_ratio: final learning rate as a fraction of the peak.
        loss_weights: weight of every unweighted term, keyed by its name (see
            `training.loss_weights`): `{"recon/l1": 1.0, "recon/l2": 1.0, "quantizer/commit":
            0.25, ...}`. Given, it is the whole table: an unknown name is refused here and a
            term the run produces but the table lacks is refused at the first step (0 logs a
            term without training on it). None: `DEFAULT_LOSS_WEIGHTS`. A positive
            "recon/perceptual" turns on the offline Inception distance, "gan/generator" the
            discriminator, "semantic/cosine" or "semantic/contrastive" the semantic alignment.
        adversarial: the hinge GAN's settings, every key optional: `{"start_step": 0,
            "adaptive": True, "channels": 64, "layers": 3}`: the generator step at which the
            discriminator switches on, VQGAN's adaptive gradient-norm scale of the GAN term, and
            the PatchGAN's shape.
        semantic: the semantic alignment's spec, see
            `tokenizers_vis.losses.semantic.build_alignment`: `{"codebook": 0, "teacher":
            {"name": "inception"}, "loss": "cosine", ...}`. The head trains with the tokenizer
            but is not part of it (not exported); the teacher is frozen, kept out of
            `state_dict`, and its features are cached per image.
        repa_teacher: the teacher of "repa/cosine_distance" (REPA) for a decoder with an
            alignment layer (`decoder.feature_dim`, the rectified flow's `repa_layer`): a
            `losses.teachers` teacher spec, default `{"name": "inception"}` (pooled 2048-d, so
            the decoder's repa_dim is 2048); frozen, cached per image, out of `state_dict`.
        grad_clip: max gradient norm for both optimizers (0 disables).
        eval_tokens: prefix lengths k validated and shown in image grids (default 1, 2, 4, .., K).
        init_from: a pretrained directory or shipped model name whose weights start this run
            (fine-tuning, or carrying a long run across machines where the Lightning checkpoint
            with its optimizer state cannot travel). Its architecture must equal `tokenizer`'s;
            training-only settings (token drop sampling) may differ.
        init_from_parts: copy only these components from `init_from` (of "encoder",
            "quantizer", "token_drop", "decoder"); the rest start fresh, e.g. a rectified-flow
            decoder on a pretrained tokenizer with another decoder.
        freeze: components that do not train (no gradients, kept in eval mode), e.g.
            ["encoder", "quantizer"] to train a decoder on a frozen tokenizer's tokens.

    A generative decoder (rectified flow) learns from "flow/mse"; its training `images` are an
    estimate (the one-step x_t - t v, noisy at large t), so its recipes weight the reconstruction
    terms 0 (they are still logged) and validation PSNR is measured on sampled decodes instead.

    With a discriminator under DDP use `strategy: ddp_find_unused_parameters_true`: the generator
    and discriminator steps each leave the other's parameters without gradients.
    """

    def __init__(
        self,
        tokenizer: str | dict[str, Any] = "tiny_cpu_fsq",
        optimizer: OptimizerCallable = adamw,
        disc_optimizer: OptimizerCallable = adamw_discriminator,
        warmup_steps: int = 100,
        lr_decay: str = "cosine",
        min_lr_ratio: float = 0.1,
        loss_weights: dict[str, float] | None = None,
        adversarial: dict[str, Any] | None = None,
        semantic: dict[str, Any] | None = None,
        repa_teacher: dict[str, Any] | None = None,
        grad_clip: float = 1.0,
        eval_tokens: list[int] | None = None,
        init_from: str | None = None,
        init_from_parts: list[str] | None = None,
        freeze: list[str] | None = None,
    ) -> None:
        super().__init__()
        if lr_decay not in ("cosine", "constant"):
            raise ValueError(f"lr_decay must be 'cosine' or 'constant', got {lr_decay!r}")
        self.save_hyperparameters(ignore=["optimizer", "disc_optimizer"])
        spec = preset_spec(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.tokenizer = Tokenizer(**spec)
        if init_from:
            warm_start(self.tokenizer, init_from, init_from_parts)
        elif init_from_parts:
            raise ValueError("init_from_parts needs init_from")
        self.frozen = check_parts(freeze or [], "freeze")
        for part in self.frozen:
            getattr(self.tokenizer, part).requires_grad_(False).eval()
        self.optimizer_factory = optimizer
        self.disc_optimizer_factory = disc_optimizer
        k_max = self.tokenizer.max_tokens
        self.eval_tokens = [k for k in (eval_tokens or prefix_lengths(k_max)) if 1 <= k <= k_max]
        self.loss_weights = check_loss_weights(loss_weights)
        self.adversarial = adversarial_settings(adversarial)
        self.discriminator = None
        if self.loss_weights.get("gan/generator", 0.0) > 0:
            self.discriminator = PatchDiscriminator(
                self.adversarial["channels"], self.adversarial["layers"]
            )
        # Frozen, large and reloadable from their own weights files: the perceptual network and
        # the teachers' FeatureCaches stay out of state_dict and EMA.
        self._perceptual: list[nn.Module] = []
        self._teacher: list[Any] = []  # the semantic teacher
        self._repa_teacher: list[FeatureCache] = []
        self.semantic = self._build_semantic(semantic)
        self._build_repa(repa_teacher)
        self.automatic_optimization = False  # two optimizers (tokenizer, discriminator)
        # FLOPs of one training step, counted on the first one when Lightning's
        # ThroughputMonitor is attached, which reads this attribute (`_count_flops`).
        self.flops_per_batch: int | None = None

    def _build_semantic(self, spec: dict[str, Any] | None) -> nn.Module | None:
        """The semantic alignment head when loss_weights weighs a semantic term (else None)."""
        weights = self.loss_weights
        if not any(weights.get(f"semantic/{loss}", 0.0) > 0 for loss in ("cosine", "contrastive")):
            return None
        head, teacher, self.semantic_codebook = build_alignment(
            spec or {}, self.tokenizer.quantizer, self.tokenizer.max_tokens
        )
        term = f"semantic/{head.loss}"
        if not weights.get(term, 0.0) > 0:
            raise LossWeightError(
                f"semantic: loss {head.loss!r} returns {term!r}, which loss_weights weighs "
                f"{weights.get(term, 'not at all')}; weigh the term the head returns"
            )
        self._teacher.append(teacher)
        return head

    def _build_repa(self, teacher_spec: dict[str, Any] | None) -> None:
        """REPA's cached teacher, for a decoder with an alignment layer."""
        feature_dim = self.tokenizer.decoder.feature_dim  # the layer REPA aligns, if any
        if feature_dim is None:
            return
        teacher = build_teacher(teacher_spec or {"name": "inception"})
        if teacher.num_features != feature_dim:
            raise ValueError(f"repa_teacher gives {teacher.num_features} features; set the "
                             f"decoder's repa_dim to it (now {feature_dim})")  # fmt: skip
        self._repa_teacher.append(FeatureCache(teacher))

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenizerSystem:
        """Copy the module (EMAWeightAveraging does) but share the optimizer factories.

        LightningCLI's optimizer callables hold the whole CLI (trainer, data module and, under DDP,
        the process group, which cannot be copied), and the frozen perceptual network is large.
        """
        shared_parts = (self.optimizer_factory, self.disc_optimizer_factory)
        for shared in (*shared_parts, self._perceptual, self._teacher, *self._repa_teacher):
            memo[id(shared)] = shared
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))  # __getstate__ drops trainer
        return new

    def train(self, mode: bool = True) -> TokenizerSystem:
        """Frozen components stay in eval mode (a VQ codebook's EMA must not move)."""
        super().train(mode)
        for part in self.frozen:
            getattr(self.tokenizer, part).eval()
        return self

    # ----------------------------------------------------------------------------------- losses
    def perceptual(self) -> nn.Module:
        if not self._perceptual:
            from tokenizers_vis.losses.perceptual import PerceptualDistance

            self._perceptual.append(PerceptualDistance().eval().requires_grad_(False))
        module = self._perceptual[0]
        return module.to(self.device)

    def reconstruction_terms(self, recon: Tensor, images: Tensor) -> dict[str, Tensor]:
        """Unweighted named reconstruction terms, computed in fp32."""
        recon, images = recon.float(), images.float()
        terms = {"recon/l1": F.l1_loss(recon, images), "recon/l2": F.mse_loss(recon, images)}
        if self.loss_weights.get("recon/perceptual", 0.0) > 0:
            terms["recon/perceptual"] = self.perceptual()(recon, images).mean()
        return terms

    def weighted(self, terms: dict[str, Tensor]) -> Tensor:
        """() the loss: each term times its `loss_weights` entry (a term without one is refused)."""
        return weigh(terms, self.loss_weights, self.device)

    def semantic_terms(
        self, quantized: QuantizerOutput, images: Tensor, lengths: Tensor
    ) -> dict[str, Tensor]:
        """The aligned sub-codebook's codes (b K d_j) predict the teacher's features of
        `images`, pooled over the prefix (b,) `lengths` the decoder saw."""
        codes = sub_codes(quantized)[self.semantic_codebook]  # (b K d_j)
        features = self._teacher[0](images)  # (b f): cached, no gradient
        return self.semantic(codes, features, lengths)

    def repa_terms(self, features: Tensor, images: Tensor) -> dict[str, Tensor]:
        """REPA: the decoder's projected patch features (b f gh gw) against the frozen teacher's
        features of the clean `images` (cached, no gradient), unweighted."""
        target = self._repa_teacher[0](images)  # (b f) or (b f h' w')
        projected = rearrange(features, "b f gh gw -> b (gh gw) f")
        grid = (features.shape[2], features.shape[3])
        return {"repa/cosine_distance": repa_cosine_distance(projected, target, grid)}

    def gan_active(self) -> bool:
        start = self.adversarial["start_step"]
        return self.discriminator is not None and self.generator_steps() >= start

    def generator_steps(self) -> int:
        # Lightning counts every optimizer step; the discriminator steps once per generator step.
        return self.global_step // (2 if self.discriminator is not None else 1)

    # --------------------------------------------------------------------------------- training
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        with self._count_flops():
            return self._training_step(batch)

    @contextlib.contextmanager
    def _count_flops(self) -> Iterator[None]:
        """Counts the FLOPs of the step inside (forward, backward, the discriminator's; matrix
        products, convolutions and attention) into `flops_per_batch`, once, and only when a
        `ThroughputMonitor` will read them: it then logs `train/device/flops_per_sec`, and MFU
        on the GPUs whose peak Lightning knows. Counting slows that one step a little."""
        monitored = any(isinstance(c, ThroughputMonitor) for c in self.trainer.callbacks)
        if self.flops_per_batch is not None or not monitored:
            yield
            return
        with flop_counter() as counter:
            yield
        self.flops_per_batch = int(counter.get_total_flops())

    def _training_step(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        images = batch[0]
        optimizers = self.optimizers()
        opt_g = optimizers[0] if isinstance(optimizers, list) else optimizers
        out = self.tokenizer(images)
        terms = {**self.reconstruction_terms(out.images, images), **out.losses}
        if self.semantic is not None:
            terms |= self.semantic_terms(out.quantized, images, out.lengths)
        if out.decoded.features is not None:
            terms |= self.repa_terms(out.decoded.features, images)
        loss = self.weighted(terms)
        if self.gan_active():
            gan = hinge_generator_loss(self.discriminator(out.images))
            scale = torch.ones((), device=self.device)
            if self.adversarial["adaptive"]:
                scale = adaptive_weight(loss, gan, self.tokenizer.decoder.last_layer)
            terms["gan/generator"] = gan
            self.log("train/gan_scale", scale)
            loss = loss + self.loss_weights["gan/generator"] * scale * gan
        self._step(opt_g, loss)
        self.lr_schedulers().step()
        if self.discriminator is not None:
            self._discriminator_step(optimizers[1], images, out.images.detach())
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log_dict({f"train/{k}": v.detach().float() for k, v in {**terms, **out.stats}.items()})
        self.log("train/tokens_mean", out.lengths.float().mean())
        return loss.detach()

    def _discriminator_step(self, opt_d: Any, real: Tensor, fake: Tensor) -> None:
        # Stepping before the GAN starts keeps Lightning's step count uniform (the loss is 0 then).
        active = float(self.gan_active())
        d_loss = active * hinge_discriminator_loss(
            self.discriminator(real), self.discriminator(fake)
        )
        self._step(opt_d, d_loss)
        self.log("train/gan/discriminator", d_loss.detach())

    def _step(self, optimizer: Any, loss: Tensor) -> None:
        """Backward, gradient clipping and the optimizer step, outside autocast.

        Lightning runs all of `training_step` inside its autocast context, so the backward pass
        would dispatch through autocast too and re-cast its ops (the backward's dtypes already
        follow the forward's): 5 % of a bf16 `emoji32_fsq` step on a CPU, measured. Outside it,
        the step is the bare PyTorch loop's.
        """
        with torch.autocast(self.device.type, enabled=False):
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            if self.hparams.grad_clip > 0:
                self.clip_gradients(optimizer, self.hparams.grad_clip, "norm")
            optimizer.step()

    # ------------------------------------------------------------------------------- validation
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Log PSNR at every k of `eval_tokens`; return the batch's ids (b K g) for callbacks."""
        images = batch[0]
        ids = None
        # A generative decoder's training images are an estimate, not a decode (DecoderOutput).
        generative = self.tokenizer.decoder.generative
        for k in self.eval_tokens:
            out = self.tokenizer(images, num_tokens=k)
            recon = out.images
            if generative:  # sampled with the decoder's default steps and a fixed seed
                recon = self.tokenizer.decode(Tokens(out.ids[:, :k]))
            # Capped so one perfect reconstruction (inf dB) cannot swamp the batch mean.
            value = psnr(recon.float(), images.float()).clamp(max=100.0).mean()
            self.log(f"val/psnr@{k}", value, sync_dist=True, batch_size=images.shape[0])
            ids = out.ids  # all K ids whatever k is: the encoder always runs in full
            if k == self.tokenizer.max_tokens:
                terms = self.reconstruction_terms(out.images, images)
                # The decoder's own terms (flow matching, at a fixed seed in eval mode).
                terms |= out.decoded.losses
                self.log(
                    "val/loss",
                    self.weighted(terms),
                    prog_bar=True,
                    sync_dist=True,
                    batch_size=images.shape[0],
                )
        return {"ids": ids}

    # ------------------------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        heads = self.semantic.parameters() if self.semantic is not None else []
        trainable = [
            p for name, part in self.tokenizer.named_children() if name not in self.frozen
            for p in part.parameters()
        ]  # fmt: skip
        opt_g = self.optimizer_factory([*trainable, *heads])
        schedule = torch.optim.lr_scheduler.LambdaLR(opt_g, self._lr_factor)
        if self.discriminator is None:
            return [opt_g], [schedule]
        opt_d = self.disc_optimizer_factory(self.discriminator.parameters())
        return [opt_g, opt_d], [schedule]

    def _lr_factor(self, step: int) -> float:
        h = self.hparams
        if step < h.warmup_steps:
            return (step + 1) / h.warmup_steps
        # `step` counts scheduler steps, one per generator step; max_steps counts both optimizers.
        total = max(0, self.trainer.max_steps) // (2 if self.discriminator is not None else 1)
        if h.lr_decay == "constant" or total <= h.warmup_steps:
            return 1.0
        progress = min(1.0, (step - h.warmup_steps) / (total - h.warmup_steps))
        return h.min_lr_ratio + (1 - h.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
