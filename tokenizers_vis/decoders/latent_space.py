"""The space a rectified flow runs in: pixels, or the latents of a frozen diffusers VAE.

Pixel space suits small images (the flow sees every pixel). For larger ones the flow can run in
the latent space of a local, frozen diffusers `AutoencoderKL` (Rombach et al., "High-Resolution
Image Synthesis with Latent Diffusion Models", 2022): latents are the encoder's mean, shifted and
scaled by the VAE's own `shift_factor` / `scaling_factor` to roughly unit variance, as SD3 does.

The VAE is not part of the decoder's weights: it reloads from its own directory, loads on first
use (building a decoder on the meta device, as pretrained loading does to check shapes, reads no
weights), and never downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


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


class FlowSpace:
    """Maps images to the flow's data and back: the identity in pixel space, else a frozen VAE.

    A plain object, not a module: nothing here is a weight of the decoder.

    Args:
        image_size: side of the images in pixels.
        vae: a local directory holding a diffusers `AutoencoderKL`; None = pixel space.
    """

    def __init__(self, image_size: int, vae: str | None = None) -> None:
        self.vae = vae
        self._vae: list[nn.Module] = []  # loaded on first use
        if vae is None:
            self.channels, self.size = 3, image_size
            return
        config = vae_config(vae)
        factor = 2 ** (len(config["block_out_channels"]) - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} is not a multiple of the VAE's {factor}")
        self.channels, self.size = config["latent_channels"], image_size // factor

    def autoencoder(self, device: torch.device) -> nn.Module:
        """The frozen VAE on `device`, loaded from `vae` on first use."""
        if not self._vae:
            self._vae.append(load_vae(self.vae))
        return self._vae[0].to(device)

    def encode(self, images: Tensor) -> Tensor:
        """images (b 3 h w) in [-1, 1] -> the flow's data (b c s s), without gradient."""
        if self.vae is None:
            return images
        vae = self.autoencoder(images.device)
        with torch.no_grad():
            z = vae.encode(images).latent_dist.mode()  # (b c s s)
        return (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def decode(self, x: Tensor) -> Tensor:
        """The flow's data (b c s s) -> images (b 3 h w), unclamped."""
        if self.vae is None:
            return x
        vae = self.autoencoder(x.device)
        z = x / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)  # (b c s s)
        return vae.decode(z.to(next(vae.parameters()).dtype)).sample
