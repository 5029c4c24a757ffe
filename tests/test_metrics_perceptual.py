"""The offline perceptual distance: zero on identical images, monotone in noise, differentiable."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from tokenizers_vis.layers import inception as inc
from tokenizers_vis.losses import perceptual as perc


@pytest.fixture(scope="module")
def distance(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISTOK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "vistok-cache"))
        try:
            return perc.PerceptualDistance(extractor=inc.load_tf_inception())
        except FileNotFoundError as err:
            pytest.fail(f"offline Inception weights missing (run tools/setup.sh): {err}")


def _smooth(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(low, size=size, mode="bicubic").clamp(-1, 1)  # (n 3 s s)


def test_zero_for_identical_and_grows_with_noise(distance):
    clean = _smooth(1, 32, seed=0)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    levels = (0.0, 0.05, 0.2, 0.5)
    recon = torch.cat([(clean + s * noise).clamp(-1, 1) for s in levels])  # (4 3 32 32)
    with torch.no_grad():
        values = distance(recon, clean.repeat(len(levels), 1, 1, 1))  # (4,)
    values = rearrange(values, "(level b) -> level b", level=len(levels))
    assert values[0].abs().max() < 1e-6
    assert (values[1:] > values[:-1]).all(), values


def test_has_gradients_and_stays_frozen(distance):
    target = _smooth(2, 32, seed=2)
    recon = target + 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(3))
    recon.requires_grad_(True)
    distance.train()
    assert not distance.training and not distance.extractor.training
    distance(recon, target).sum().backward()
    assert recon.grad is not None and torch.isfinite(recon.grad).all()
    assert recon.grad.abs().sum() > 0
    assert all(p.grad is None for p in distance.parameters())


def test_auto_says_which_distance_it_uses(distance, monkeypatch):
    monkeypatch.setattr(perc, "lpips_vgg_available", lambda: False)
    monkeypatch.setattr(perc, "PerceptualDistance", lambda: distance)
    with pytest.warns(UserWarning, match="perceptual_inception"):
        chosen = perc.load_perceptual("auto")
    assert chosen.metric_name == "perceptual_inception"
    with pytest.raises(FileNotFoundError, match="never downloads"):
        perc.load_perceptual("lpips_vgg")
    with pytest.raises(ValueError, match="unknown perceptual"):
        perc.load_perceptual("vgg")
