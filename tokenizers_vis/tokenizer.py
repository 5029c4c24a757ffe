"""Tokenizer: images <-> ordered 1D sequences of discrete ids whose every prefix decodes.

    images (b 3 h w) in [-1, 1]
      -> encoder    latents (b K d)
      -> quantizer  codes (b K d), ids (b K g)
      -> token drop keep a prefix k per sample (training: sampled; inference: asked for)
      -> decoder    images (b 3 h w)

The constructor's keyword arguments are the spec: the same dict lives in presets, YAML configs and a
pretrained `config.json`. Shared sizes (image size, K, code dimension) are set once here and handed
to
the components, so a spec cannot disagree with itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from tokenizers_vis import decoders, encoders, quantizers  # noqa: F401  (registration)
from tokenizers_vis.cpu_gemm import inference_gemms
from tokenizers_vis.decoders import DecoderOutput
from tokenizers_vis.hub import SHIPPED_DIR, PretrainedMixin
from tokenizers_vis.quantizers import QuantizerOutput
from tokenizers_vis.quantizers.base import check_vocab_sizes
from tokenizers_vis.registry import DECODERS, ENCODERS, QUANTIZERS, TOKEN_DROPS

# The default prefix-keeping spec, read-only so a default is never shared mutable state; the
# captured config holds a plain dict copy of it.
NESTED_DROPOUT = MappingProxyType({"name": "nested_dropout"})


def prefix_lengths(max_tokens: int) -> list[int]:
    """1, 2, 4, .., K (K included when it is no power of two): the prefix lengths that
    validation, evaluation sweeps, image grids and refinement use by default."""
    return sorted(
        {2**i for i in range(max_tokens.bit_length()) if 2**i <= max_tokens} | {max_tokens}
    )


@dataclass
class Tokens:
    """A batch of token sequences.

    Attributes:
        ids: (b n g) int64, g = number of sub-codebooks.
        lengths: (b,) int64 valid prefix length per sample, or None when all n are valid.
            Positions at or after a sample's length are padding and are ignored by `decode`.
    """

    ids: Tensor
    lengths: Tensor | None = None

    def __post_init__(self) -> None:
        if self.ids.dim() != 3:
            raise ValueError(f"Tokens.ids must be (b, n, g), got shape {tuple(self.ids.shape)}")
        if self.lengths is not None and self.lengths.shape != self.ids.shape[:1]:
            raise ValueError("Tokens.lengths must have shape (b,)")

    def to(self, device: torch.device | str) -> Tokens:
        lengths = None if self.lengths is None else self.lengths.to(device)
        return Tokens(self.ids.to(device), lengths)


@dataclass
class TokenizerOutput:
    """Training-time output of `Tokenizer.forward`: what each stage returned, nothing recomputed.

    Attributes:
        quantized: the quantizer's output for all K tokens: codes (b K d), ids (b K g), its
            unweighted terms and stats (a `FactorizedOutput` for factorized quantizers, whose
            sub-codes a semantic alignment reads).
        decoded: the decoder's training output (see `DecoderOutput`): `images` is the
            reconstruction of a deterministic decoder, a training-time estimate of a generative
            one; its own terms; its alignment `features` or None.
        lengths: (b,) prefix length the decoder saw for each sample.
    """

    quantized: QuantizerOutput
    decoded: DecoderOutput
    lengths: Tensor

    @property
    def images(self) -> Tensor:
        """(b 3 h w) `decoded.images`, unclamped."""
        return self.decoded.images

    @property
    def ids(self) -> Tensor:
        """(b K g) ids of all K tokens."""
        return self.quantized.ids

    @property
    def losses(self) -> dict[str, Tensor]:
        """Every unweighted named term: the quantizer's, then the decoder's."""
        return {**self.quantized.losses, **self.decoded.losses}

    @property
    def stats(self) -> dict[str, Tensor]:
        """Detached scalars to log (the quantizer's)."""
        return dict(self.quantized.stats)


class Tokenizer(PretrainedMixin, nn.Module):
    """A 1D variable-length image tokenizer assembled from registered components.

    Args:
        image_size: square image size in pixels.
        max_tokens: K, the longest token sequence.
        encoder: encoder spec, e.g. `{"name": "vit_1d", "patch_size": 4, "width": 192, ...}`.
        quantizer: quantizer spec, e.g. `{"name": "fsq", "levels": [8, 8, 8, 8]}`.
        decoder: decoder spec, e.g. `{"name": "vit_1d", ...}`.
        token_drop: prefix-keeping spec: `{"name": "nested_dropout" | "tail_drop", ...}`.

    The arguments, as given, are `self.config` (`PretrainedMixin`): the spec `save_pretrained`
    writes and `from_pretrained` builds from.
    """

    pretrained_kind = "tokenizer"
    shipped_dir = SHIPPED_DIR

    def __init__(
        self,
        image_size: int,
        max_tokens: int,
        encoder: dict[str, Any],
        quantizer: dict[str, Any],
        decoder: dict[str, Any],
        token_drop: dict[str, Any] = NESTED_DROPOUT,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.max_tokens = max_tokens
        self.quantizer = QUANTIZERS.build(quantizer)
        check_vocab_sizes(tuple(self.quantizer.vocab_sizes), f"quantizer {quantizer.get('name')!r}")
        dim = self.quantizer.dim
        self.encoder = ENCODERS.build(
            encoder, image_size=image_size, num_tokens=max_tokens, out_dim=dim
        )
        self.token_drop = TOKEN_DROPS.build(token_drop, max_tokens=max_tokens, dim=dim)
        self.decoder = DECODERS.build(
            decoder, image_size=image_size, num_tokens=max_tokens, in_dim=dim
        )

    @classmethod
    def upgrade_spec(cls, spec: dict[str, Any], version: int) -> dict[str, Any]:
        """Format 1 named our even uniform / power-of-two mix `uniform_pow2`, the name FlexTok's
        distribution has since; a version-1 spec saying it means `uniform_or_pow2`."""
        drop = spec.get("token_drop")
        if version < 2 and isinstance(drop, dict) and drop.get("sampling") == "uniform_pow2":
            spec = {**spec, "token_drop": {**drop, "sampling": "uniform_or_pow2"}}
        return spec

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        """One vocabulary size per sub-codebook."""
        return tuple(self.quantizer.vocab_sizes)

    def forward(self, images: Tensor, num_tokens: int | Tensor | None = None) -> TokenizerOutput:
        """Reconstruct `images` (b 3 h w) through a prefix of k tokens.

        `num_tokens=None` samples k per sample in training mode and keeps all K in eval mode.
        """
        self.check_images(images)
        q = self.quantizer(self.encoder(images))  # codes (b K d), ids (b K g)
        b = images.shape[0]
        if num_tokens is None and self.training:
            lengths = self.token_drop.sample_lengths(b, images.device)
        else:
            lengths = self.check_lengths(num_tokens, b, images.device)
        tokens, key_mask = self.token_drop(q.codes, lengths)  # (b K d), (b K) | None
        return TokenizerOutput(q, self.decoder(tokens, key_mask, images=images), lengths)

    @torch.no_grad()
    def encode(self, images: Tensor, num_tokens: int | Tensor | None = None) -> Tokens:
        """images (b 3 h w) in [-1, 1] -> Tokens with ids (b k g).

        `num_tokens`: an int k in 1..K for every image, a (b,) tensor of per-image k (ids are padded
        to
        the longest and `lengths` says which are valid), or None for all K.
        """
        self.check_images(images)
        with inference_gemms():
            ids = self.quantizer(self.encoder(images)).ids  # (b K g)
        if num_tokens is None or isinstance(num_tokens, int):
            k = self.check_lengths(num_tokens, 1, images.device).item()
            return Tokens(ids[:, :k].contiguous())
        lengths = self.check_lengths(num_tokens, images.shape[0], images.device)
        keep = torch.arange(ids.shape[1], device=ids.device)[None, :, None] < lengths[:, None, None]
        ids = torch.where(keep, ids, 0)[:, : int(lengths.max())]  # (b k_max g), padding = 0
        return Tokens(ids.contiguous(), lengths)

    @torch.no_grad()
    def decode(
        self,
        tokens: Tokens | Tensor,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        guidance_scale: float | None = None,
    ) -> Tensor:
        """Tokens (ids (b k g), k <= K) -> images (b 3 h w) clamped to [-1, 1].

        `num_steps`, `generator` and `guidance_scale` (classifier-free guidance; 1 = off, None =
        the decoder's default) are used by generative decoders (`decoder.generative`, rectified
        flow); a deterministic decoder accepts and ignores them, so callers need not branch.
        """
        if isinstance(tokens, Tensor):
            tokens = Tokens(tokens)
        ids = tokens.ids.to(self._device())
        b, n, g = ids.shape
        if not 1 <= n <= self.max_tokens:
            raise ValueError(f"can decode 1..{self.max_tokens} tokens, got {n}")
        self.quantizer.check_ids(ids)
        lengths = n if tokens.lengths is None else tokens.lengths.to(ids.device)
        lengths = self.check_lengths(lengths, b, ids.device)  # (b,)
        padded = torch.zeros(b, self.max_tokens, g, dtype=torch.int64, device=ids.device)
        padded[:, :n] = ids  # (b K g): positions past a prefix are dropped by the token drop
        codes = self.quantizer.ids_to_codes(padded)  # (b K d)
        with inference_gemms():
            return self.decode_codes(codes, lengths, num_steps, generator, guidance_scale)

    def decode_codes(
        self,
        codes: Tensor,
        lengths: Tensor,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        guidance_scale: float | None = None,
    ) -> Tensor:
        """Codes of K positions (b K d) and per-sample prefix lengths (b,) -> images (b 3 h w) in
        [-1, 1]: the token drop (mask token or key mask past each prefix), then `decoder.sample`.

        The one decode step every caller shares: `decode` (from ids), encode-time refinement
        (differentiable: not under no_grad, and a deterministic decoder passes gradients to the
        codes) and the ONNX decoder graph (traceable: nothing here branches on values).

        Args:
            codes: (b K d) quantizer codes; what positions at or past a sample's length hold
                does not matter.
            lengths: (b,) int64 in 1..K, as `check_lengths` returns them (not checked here: a
                traced graph cannot raise).
            num_steps, generator, guidance_scale: sampling settings of a generative decoder
                (None = the decoder's defaults and a fixed seed); a deterministic one ignores
                them.
        """
        tokens, key_mask = self.token_drop(codes, lengths)  # (b K d), (b K) | None
        images = self.decoder.sample(
            tokens,
            key_mask,
            num_steps=num_steps,
            generator=generator,
            guidance_scale=guidance_scale,
        )
        return images.clamp(-1, 1)  # (b 3 h w)

    def check_lengths(
        self, num_tokens: int | Tensor | None, batch: int, device: torch.device
    ) -> Tensor:
        """Validate a prefix length k (an int for every sample, a (batch,) tensor, or None = K)
        and return (batch,) int64 lengths on `device`; ValueError outside 1..K."""
        if num_tokens is None:
            num_tokens = self.max_tokens
        lengths = torch.as_tensor(num_tokens, device=device).long()
        if lengths.dim() == 0:
            lengths = lengths.expand(batch)
        if lengths.shape != (batch,):
            raise ValueError(f"num_tokens must be an int or a ({batch},) tensor")
        if bool((lengths < 1).any()) or bool((lengths > self.max_tokens).any()):
            raise ValueError(f"num_tokens must be in 1..{self.max_tokens}, got {num_tokens}")
        return lengths

    def check_images(self, images: Tensor) -> None:
        """ValueError unless `images` is (b, 3, image_size, image_size)."""
        expected = (3, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be (b, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )

    def _device(self) -> torch.device:
        return next(self.parameters()).device
