"""TokenizerSystem: the LightningModule that trains a `Tokenizer`.

The system owns everything that is about training rather than the model: loss weights, the
discriminator, optimizers and schedules, and validation at several prefix lengths. Components return
unweighted named terms; the weights live here, once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from einops import rearrange
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from tokenizers_vis.layers.repa import repa_cosine_distance
from tokenizers_vis.losses.adversarial import (
    PatchDiscriminator,
    adaptive_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from tokenizers_vis.losses.semantic import (
    FeatureCache,
    build_alignment,
    build_teacher,
    capture_output,
)
from tokenizers_vis.metrics.reconstruction import psnr
from tokenizers_vis.presets import preset_spec
from tokenizers_vis.quantizers import QuantizerOutput, sub_codes
from tokenizers_vis.tokenizer import Tokenizer, Tokens, prefix_lengths


def adamw(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Default optimizer: AdamW with the betas ViT tokenizers train with."""
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=1e-4)


def adamw_discriminator(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.5, 0.9), weight_decay=1e-4)


# Spec keys that only change how a tokenizer trains or samples, not which weights it has.
TRAINING_ONLY_KEYS = {
    "token_drop": {"sampling", "drop_prob", "min_tokens"},
    "decoder": {"num_steps", "sampler", "guidance_scale", "cond_dropout", "time_sampling"},
}
PARTS = ("encoder", "quantizer", "token_drop", "decoder")  # the Tokenizer's components


def architecture(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without its training-only settings: two specs with equal architectures load each
    other's weights."""
    out = copy.deepcopy(spec)
    for key, fields in TRAINING_ONLY_KEYS.items():
        for field in fields:
            out.get(key, {}).pop(field, None)
    return out


def check_parts(parts: Iterable[str], what: str) -> list[str]:
    parts = list(parts)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"{what}: unknown parts {unknown}; known: {', '.join(PARTS)}")
    return parts


def warm_start(tokenizer: Tokenizer, init_from: str, parts: list[str] | None = None) -> None:
    """Copy the weights of pretrained `init_from` into `tokenizer` (strict: same architecture).

    `parts` (e.g. ["encoder", "quantizer"]) copies only those components, which then must agree
    with `init_from` (with the shared sizes); the others keep their fresh initialisation, so a
    new decoder can learn on a pretrained tokenizer's tokens.
    """
    pretrained = Tokenizer.from_pretrained(init_from)
    ours, theirs = architecture(tokenizer.config), architecture(pretrained.config)
    if parts is not None:
        keys = ["image_size", "max_tokens", *check_parts(parts, "init_from_parts")]
        ours, theirs = ({k: spec[k] for k in keys} for spec in (ours, theirs))
    if ours != theirs:
        raise ValueError(
            f"init_from {init_from!r} has a different architecture: {theirs} vs this run's {ours}"
        )
    if parts is None:
        tokenizer.load_state_dict(pretrained.state_dict(), strict=True)
        return
    for part in parts:
        getattr(tokenizer, part).load_state_dict(getattr(pretrained, part).state_dict())


class TokenizerSystem(L.LightningModule):
    """Train a tokenizer with reconstruction, perceptual, quantizer and (optionally) GAN losses.

    Args:
        tokenizer: a preset name or a full tokenizer spec (`Tokenizer(**spec)`).
        optimizer: factory for the tokenizer's optimizer (LightningCLI fills it from YAML).
        disc_optimizer: factory for the discriminator's optimizer.
        warmup_steps: linear learning-rate warm-up.
        lr_decay: "cosine" to `min_lr_ratio` at `trainer.max_steps`, or "constant".
        min_lr_ratio: final learning rate as a fraction of the peak.
        l1_weight, l2_weight: pixel reconstruction weights.
        perceptual_weight: weight of the offline Inception perceptual distance (0 disables it).
        quantizer_weight: weight of every "quantizer/*" term (commitment, codebook) except
            the disentanglement term, which has its own.
        disentangle_weight: weight of "quantizer/disentangle", the squared cosine similarity
            of a factorized quantizer's sub-codes at the same position (FQGAN uses 0.1).
        semantic_weight: weight of the semantic alignment term ("semantic/cosine" or
            "semantic/contrastive"; FQGAN uses 0.5); 0 disables it and builds no teacher.
        semantic: the alignment's spec, see `tokenizers_vis.losses.semantic.build_alignment`:
            `{"codebook": 0, "teacher": {"name": "inception"}, "loss": "cosine", ...}`. The
            head trains with the tokenizer but is not part of it (not exported); the teacher is
            frozen, kept out of `state_dict`, and its features are cached per image.
        gan_weight: hinge-GAN generator weight (0 disables the discriminator).
        gan_start_step: generator step at which the discriminator switches on.
        gan_adaptive: scale the GAN term by VQGAN's adaptive gradient-norm ratio.
        disc_channels, disc_layers: PatchGAN shape.
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
        flow_weight: weight of a generative decoder's "flow/mse" flow-matching term.
        repa_weight: weight of "repa/cosine_distance" (REPA, 0.5 in the paper) for a decoder
            with `repa_layer`; its teacher is `repa_teacher`, a `losses.semantic` teacher spec
            (default `{"name": "inception"}`: pooled 2048-d, so the decoder's repa_dim is 2048),
            frozen, cached per image and kept out of `state_dict`.

    A rectified-flow decoder learns from "flow/mse"; its `images` are the one-step estimate
    x_t - t v, noisy at large t, so its presets weight the reconstruction terms 0 (they are still
    logged) and validation PSNR is measured on sampled decodes instead.

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
        l1_weight: float = 1.0,
        l2_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        quantizer_weight: float = 0.25,
        disentangle_weight: float = 0.0,
        semantic_weight: float = 0.0,
        semantic: dict[str, Any] | None = None,
        gan_weight: float = 0.0,
        gan_start_step: int = 0,
        gan_adaptive: bool = True,
        disc_channels: int = 64,
        disc_layers: int = 3,
        grad_clip: float = 1.0,
        eval_tokens: list[int] | None = None,
        init_from: str | None = None,
        init_from_parts: list[str] | None = None,
        freeze: list[str] | None = None,
        flow_weight: float = 1.0,
        repa_weight: float = 0.5,
        repa_teacher: dict[str, Any] | None = None,
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
        self.discriminator = (
            PatchDiscriminator(disc_channels, disc_layers) if gan_weight > 0 else None
        )
        k_max = self.tokenizer.max_tokens
        self.eval_tokens = [k for k in (eval_tokens or prefix_lengths(k_max)) if 1 <= k <= k_max]
        # Frozen, large and reloadable from its own weights file: kept out of state_dict and EMA.
        self._perceptual: list[nn.Module] = []
        self._teacher: list[Any] = []  # the semantic teacher's FeatureCache, same reasons
        self.semantic = None
        if semantic_weight > 0:
            self.semantic, teacher, self.semantic_codebook = build_alignment(
                semantic or {}, self.tokenizer.quantizer, self.tokenizer.max_tokens
            )
            self._teacher.append(teacher)
        self._repa_teacher: list[FeatureCache] = []  # REPA's cached teacher, same reasons
        feature_dim = self.tokenizer.decoder.feature_dim  # the layer REPA aligns, if any
        if feature_dim is not None:
            teacher = build_teacher(repa_teacher or {"name": "inception"})
            if teacher.num_features != feature_dim:
                raise ValueError(f"repa_teacher gives {teacher.num_features} features; set the "
                                 f"decoder's repa_dim to it (now {feature_dim})")  # fmt: skip
            self._repa_teacher.append(FeatureCache(teacher))
        self.automatic_optimization = False  # two optimizers (tokenizer, discriminator)

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
        if self.hparams.perceptual_weight > 0:
            terms["recon/perceptual"] = self.perceptual()(recon, images).mean()
        return terms

    def weighted(self, terms: dict[str, Tensor]) -> Tensor:
        h = self.hparams
        weights = {
            "recon/l1": h.l1_weight,
            "recon/l2": h.l2_weight,
            "recon/perceptual": h.perceptual_weight,
            "quantizer/disentangle": h.disentangle_weight,
            "semantic/cosine": h.semantic_weight,
            "semantic/contrastive": h.semantic_weight,
            "flow/mse": h.flow_weight,
            "repa/cosine_distance": h.repa_weight,
        }
        total = torch.zeros((), device=self.device)
        for name, value in terms.items():
            if name in weights:
                weight = weights[name]
            else:
                weight = h.quantizer_weight if name.startswith("quantizer/") else 1.0
            total = total + weight * value
        return total

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
        return (
            self.discriminator is not None and self.generator_steps() >= self.hparams.gan_start_step
        )

    def generator_steps(self) -> int:
        # Lightning counts every optimizer step; the discriminator steps once per generator step.
        return self.global_step // (2 if self.discriminator is not None else 1)

    # --------------------------------------------------------------------------------- training
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images = batch[0]
        optimizers = self.optimizers()
        opt_g = optimizers[0] if isinstance(optimizers, list) else optimizers
        # Tokenizer.forward returns no codes; the alignment reads the quantizer's own output.
        quantizer = self.tokenizer.quantizer
        with capture_output(quantizer) if self.semantic is not None else nullcontext() as seen:
            out = self.tokenizer(images)
        terms = {**self.reconstruction_terms(out.images, images), **out.losses}
        if self.semantic is not None:
            terms |= self.semantic_terms(seen[-1], images, out.lengths)
        if out.features is not None:
            terms |= self.repa_terms(out.features, images)
        loss = self.weighted(terms)
        if self.gan_active():
            gan = hinge_generator_loss(self.discriminator(out.images))
            scale = torch.ones((), device=self.device)
            if self.hparams.gan_adaptive:
                scale = adaptive_weight(loss, gan, self.tokenizer.decoder.last_layer)
            terms["gan/generator"] = gan
            self.log("train/gan_scale", scale)
            loss = loss + self.hparams.gan_weight * scale * gan
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
                terms |= {n: v for n, v in out.losses.items() if n.startswith("flow/")}
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
