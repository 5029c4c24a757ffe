"""The decoder contract: what the tokenizer, the training system and the losses may rely on.

Two kinds of decoder share it. A deterministic decoder (the ViT one) maps a token prefix to one
image. A generative decoder (rectified flow) samples one of the many images a prefix could mean:
it trains on a loss of its own and decodes by integrating from noise, so what it returns in
training is not a decode. `generative` says which, and `DecoderOutput.images` says what the
training-time image is for each, so callers never test a decoder's class or probe attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass
class DecoderOutput:
    """What a decoder returns in training (`Decoder.forward`).

    Attributes:
        images: (b 3 h w) unclamped, differentiable in the decoder's weights: the image the
            training system puts reconstruction, perceptual and adversarial losses on.
            Deterministic decoder: the reconstruction itself, equal to `sample` of the same
            tokens. Generative decoder: a training-time estimate of the input (rectified flow:
            the one-step estimate x_t - t v at the sampled t, noisy at large t), not a decode;
            measure reconstructions with `sample`.
        losses: unweighted named terms the decoder owns ("flow/mse"); empty when it owns none.
        features: (b f gh gw) an intermediate layer's projected patch features on the decoder's
            patch grid, which a representation-alignment loss (REPA) compares with a teacher's;
            None when the decoder has no such layer (`Decoder.feature_dim` is None).
    """

    images: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    features: Tensor | None = None


class Decoder(ABC, nn.Module):
    """Base class of every registered decoder: tokens (b n d) -> images (b 3 h w).

    A decoder is built with the shared sizes `image_size`, `num_tokens` (K) and `in_dim` (the
    code dimension) from the tokenizer, plus its own spec. Tokens cut from a prefix arrive either
    replaced (nested dropout's mask token) or hidden by `key_mask` (tail drop); a decoder must give
    the same output whatever hidden tokens hold.

    Subclasses set `generative` and implement `forward`, `sample` and `last_layer`; one with an
    alignment layer overrides `feature_dim`.
    """

    # True: `sample` draws one of many images a prefix could mean, so it depends on `generator`
    # and `num_steps` (eval and the codec pass both). False: one output per prefix.
    generative: ClassVar[bool]

    @abstractmethod
    def forward(
        self, tokens: Tensor, key_mask: Tensor | None = None, images: Tensor | None = None
    ) -> DecoderOutput:
        """Training: tokens (b n d), key_mask (b n) True = visible (None = all) -> DecoderOutput.

        `images` (b 3 h w) in [-1, 1] are the inputs being reconstructed; a generative decoder
        needs them (its loss is on them), a deterministic one ignores them.
        """

    @abstractmethod
    def sample(
        self,
        tokens: Tensor,
        key_mask: Tensor | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        guidance_scale: float | None = None,
    ) -> Tensor:
        """Inference: tokens (b n d), key_mask (b n) -> images (b 3 h w), unclamped.

        `num_steps` (None = the spec's default), `generator` (None = a fixed seed, so decoding
        is a function of the tokens) and `guidance_scale` (classifier-free guidance; 1 = off,
        None = the spec's default) steer a generative decoder; a deterministic one accepts and
        ignores them, so callers need not branch.
        """

    @property
    @abstractmethod
    def last_layer(self) -> Tensor:
        """The output head's weight: the adaptive GAN weight (VQGAN) balances the reconstruction
        and adversarial gradients there."""

    @property
    def feature_dim(self) -> int | None:
        """Channels f of `DecoderOutput.features`, or None when the decoder gives none."""
        return None
