"""The space a rectified flow runs in: pixels, or the latents of a frozen diffusers VAE.

Pixel space suits small images (the flow sees every pixel). For larger ones the flow can run in
the latent space of a local, frozen diffusers `AutoencoderKL` (Rombach et al., "High-Resolution
Image Synthesis with Latent Diffusion Models", 2022): latents are the encoder's mean, shifted and
scaled by the VAE's own `shift_factor` / `scaling_factor` to roughly unit variance, as SD3 does.

A VAE given as a directory is not part of the decoder's weights: it reloads from its own
directory, loads on first use (building a decoder on the meta device, as pretrained loading does to
check shapes, reads no weights), and never downloads. A VAE given as `layers.vae` keyword arguments
(a published FlexTok) is built here as two frozen modules the decoder registers, so its weights
travel in the tokenizer's state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tokenizers_vis.layers.vae import VAEDecoder, VAEEncoder, vae_downsampling


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
        vae: a local directory holding a diffusers `AutoencoderKL`, or `layers.vae` keyword
            arguments (see `build_modules`); None = pixel space.
    """

    def __init__(self, image_size: int, vae: str | dict[str, Any] | None = None) -> None:
        self.vae = vae
        self._vae: list[nn.Module] = []  # loaded on first use
        self._halves: list[nn.ModuleDict] = []  # the built VAE, held by the decoder
        if vae is None:
            self.channels, self.size = 3, image_size
            return
        config = vae if isinstance(vae, dict) else vae_config(vae)
        factor = vae_downsampling(config.get("block_out_channels", (128, 256, 512, 512)))
        if image_size % factor:
            raise ValueError(f"image_size {image_size} is not a multiple of the VAE's {factor}")
        self.channels, self.size = config.get("latent_channels", 16), image_size // factor

    def build_modules(self) -> nn.ModuleDict:
        """The VAE given as keyword arguments, frozen: {"encoder": VAEEncoder, "decoder":
        VAEDecoder}. The caller registers it (its weights are the caller's)."""
        if not isinstance(self.vae, dict):
            raise TypeError("build_modules needs the VAE as layers.vae keyword arguments")
        halves = nn.ModuleDict(
            {"encoder": VAEEncoder(**self.vae), "decoder": VAEDecoder(**self.vae)}
        )
        self._halves[:] = [halves.eval().requires_grad_(False)]
        return halves

    def autoencoder(self, device: torch.device) -> nn.Module:
        """The frozen VAE on `device`, loaded from `vae` on first use."""
        if not self._vae:
            self._vae.append(load_vae(self.vae))
        return self._vae[0].to(device)

    def encode(self, images: Tensor) -> Tensor:
        """images (b 3 h w) in [-1, 1] -> the flow's data (b c s s), without gradient."""
        if self.vae is None:
            return images
        if self._halves:
            with torch.no_grad():
                return self._halves[0]["encoder"](images)  # (b c s s) scaled latent means
        vae = self.autoencoder(images.device)
        with torch.no_grad():
            z = vae.encode(images).latent_dist.mode()  # (b c s s)
        return (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def decode(self, x: Tensor) -> Tensor:
        """The flow's data (b c s s) -> images (b 3 h w), unclamped."""
        if self.vae is None:
            return x
        if self._halves:
            return self._halves[0]["decoder"](x)  # (b 3 h w)
        vae = self.autoencoder(x.device)
        z = x / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)  # (b c s s)
        return vae.decode(z.to(next(vae.parameters()).dtype)).sample
