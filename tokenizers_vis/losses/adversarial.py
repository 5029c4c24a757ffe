"""PatchGAN discriminator and hinge losses.

Papers: Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (pix2pix,
2017) for the PatchGAN; Esser et al., "Taming Transformers" (VQGAN, 2021) for its use in image
tokenizers and for the adaptive generator weight; Lim & Ye, "Geometric GAN" (2017) for the hinge
loss.

Changes: the number of stride-2 layers is a parameter, so 32x32 inputs keep a spatial logit map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """images (b 3 h w) -> realness logits (b 1 h' w'), one per receptive-field patch.

    Args:
        channels: width of the first conv layer; doubles each downsampling, capped at 8x.
        num_layers: stride-2 layers (3 for 256 px as in pix2pix, 2 for 32 px).
    """

    def __init__(self, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [
                nn.Conv2d(width, out, 4, stride, 1, bias=False),
                nn.GroupNorm(8, out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss for the discriminator: push real logits above 1 and fake ones below -1."""
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """Generator side of the hinge GAN: raise the discriminator's logits on reconstructions."""
    return -fake_logits.mean()


def adaptive_weight(
    recon: Tensor, gan: Tensor, last_layer: Tensor, max_weight: float = 1e4
) -> Tensor:
    """VQGAN's balance: ||d recon / d W|| / ||d gan / d W|| at the decoder's last layer W."""
    recon_grad = torch.autograd.grad(recon, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan, last_layer, retain_graph=True)[0]
    weight = recon_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
