"""The VAE halves (`layers/vae.py`) are diffusers' AutoencoderKL, split, with its key names."""

from __future__ import annotations

from pathlib import Path

import torch

from tokenizers_vis.layers.vae import VAEDecoder, VAEEncoder, load_autoencoder_kl

ARCH = {"latent_channels": 4, "block_out_channels": [8, 8], "norm_num_groups": 4}


def test_halves_load_an_autoencoder_kl_directory_and_match_it(tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=2,
    ).eval()
    vae.save_pretrained(tmp_path)
    encoder = VAEEncoder(**ARCH, scaling_factor=0.5).eval()
    decoder = VAEDecoder(**ARCH, scaling_factor=0.5).eval()
    load_autoencoder_kl(encoder, tmp_path)
    load_autoencoder_kl(decoder, tmp_path)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = encoder(images)  # (2 4 8 8)
        torch.testing.assert_close(latents, vae.encode(images).latent_dist.mode() * 0.5)
        torch.testing.assert_close(decoder(latents), vae.decode(latents / 0.5).sample)


def test_a_directory_without_weights_is_refused(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_autoencoder_kl(VAEEncoder(**ARCH), tmp_path)


def test_a_new_flextok_takes_its_vae_from_a_local_directory(tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    from tokenizers_vis.convert.flextok import flextok_with_vae

    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        scaling_factor=0.3,
    )
    vae.save_pretrained(tmp_path)
    small = {"width": 32, "depth": 1, "num_heads": 1}
    tok = flextok_with_vae(
        "flextok_d12", tmp_path, image_size=16, max_tokens=4, encoder=small, decoder=small
    )
    assert tok.config["encoder"]["vae"]["scaling_factor"] == 0.3
    own = vae.state_dict()
    for half in (tok.encoder.vae, *tok.decoder.latent_vae.values()):
        for key, value in half.state_dict().items():
            assert torch.equal(value, own[key]), key
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert tok.encode(images).ids.shape == (1, 4, 1)
