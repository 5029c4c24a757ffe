"""The two halves of a KL autoencoder (Stable Diffusion's VAE) as parts of a tokenizer.

Paper: Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (2022): a
convolutional autoencoder with a KL-regularised latent, 8x smaller per side. FlexTok (Bachmann et
al., 2025) tokenizes the latents of such a VAE (16 channels) and decodes back into them.

Why halves: the tokenizer's encoder needs only the VAE's encoder, its decoder only the VAE's
decoder, so each holds its own half and the tokenizer's state dict holds the whole VAE once. The
layers are diffusers' `Encoder` / `Decoder`, built exactly as `AutoencoderKL` builds them, and the
key names under each half (`encoder.*`, `quant_conv.*` / `post_quant_conv.*`, `decoder.*`) are
`AutoencoderKL`'s, so a diffusers VAE's weights load into the halves unchanged
(`load_autoencoder_kl`).

What we changed: encoding returns the latent distribution's mean (its mode), never a sample, so a
tokenizer's ids are a function of the image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["VAEDecoder", "VAEEncoder", "load_autoencoder_kl", "vae_downsampling"]


def vae_downsampling(block_out_channels: list[int]) -> int:
    """Image pixels per latent along a side: every block but the last halves the size."""
    return 2 ** (len(block_out_channels) - 1)


class VAEEncoder(nn.Module):
    """images (b 3 h w) in [-1, 1] -> latents (b c h/f w/f), scaled: (mean - shift) * scale.

    Args:
        latent_channels: c, channels of the latent.
        block_out_channels: channels of each resolution level; f = 2 ** (levels - 1).
        layers_per_block: residual blocks per level.
        norm_num_groups: GroupNorm groups.
        scaling_factor, shift_factor: latents are (mean - shift) * scale, the normalisation a
            flow model is trained on (FlexTok: scale only).
    """

    def __init__(
        self,
        latent_channels: int = 16,
        block_out_channels: list[int] | tuple[int, ...] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
    ) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Encoder

        levels = len(block_out_channels)
        self.encoder = Encoder(
            in_channels=3,
            out_channels=latent_channels,
            down_block_types=("DownEncoderBlock2D",) * levels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn="silu",
            double_z=True,
        )
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.latent_channels = latent_channels
        self.factor = vae_downsampling(list(block_out_channels))
        self.scaling_factor, self.shift_factor = scaling_factor, shift_factor

    def forward(self, images: Tensor) -> Tensor:
        """images (b 3 h w) -> scaled latent means (b c h/f w/f)."""
        moments = self.quant_conv(self.encoder(images))  # (b 2c h/f w/f) mean, log-variance
        mean = moments[:, : self.latent_channels]  # (b c h/f w/f)
        return (mean - self.shift_factor) * self.scaling_factor


class VAEDecoder(nn.Module):
    """scaled latents (b c h/f w/f) -> images (b 3 h w), unclamped. Arguments as `VAEEncoder`."""

    def __init__(
        self,
        latent_channels: int = 16,
        block_out_channels: list[int] | tuple[int, ...] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
    ) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Decoder

        levels = len(block_out_channels)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.decoder = Decoder(
            in_channels=latent_channels,
            out_channels=3,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn="silu",
        )
        self.latent_channels = latent_channels
        self.factor = vae_downsampling(list(block_out_channels))
        self.scaling_factor, self.shift_factor = scaling_factor, shift_factor

    def forward(self, latents: Tensor) -> Tensor:
        """scaled latents (b c s s) -> images (b 3 s*f s*f)."""
        z = latents / self.scaling_factor + self.shift_factor  # (b c s s) the VAE's own scale
        return self.decoder(self.post_quant_conv(z))


def load_autoencoder_kl(half: VAEEncoder | VAEDecoder, directory: str | Path) -> None:
    """Load a local diffusers `AutoencoderKL` directory's weights (safetensors) into one half.

    Only the half's own tensors are taken; a missing or misshaped one raises. Never downloads.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no AutoencoderKL *.safetensors in {directory}")
    tensors: dict[str, Tensor] = {}
    for file in files:
        tensors.update(load_file(file))
    own = half.state_dict()
    missing = sorted(set(own) - set(tensors))
    if missing:
        raise KeyError(f"{directory} lacks {len(missing)} VAE tensors, e.g. {missing[:3]}")
    with torch.no_grad():
        half.load_state_dict({key: tensors[key] for key in own}, strict=True)
