"""PSNR / SSIM / MS-SSIM agree with torchmetrics' functional implementations, at small sizes too."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from tokenizers_vis.metrics import reconstruction as rec


def _pair(n: int, size: int, seed: int, noise: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(2, size // 8), max(2, size // 8), generator=g) * 2 - 1
    target = F.interpolate(low, size=size, mode="bicubic").clamp(-1, 1)  # (n 3 s s)
    recon = target + noise * torch.randn(target.shape, generator=g)  # overshoots: clamped
    return recon, target


@pytest.mark.parametrize("size", [16, 32, 64, 256])
def test_agrees_with_torchmetrics(size):
    recon, target = _pair(2, size, seed=size)
    x, y = ((recon + 1) / 2).clamp(0, 1), (target + 1) / 2
    expected_psnr = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    expected_ssim = structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")
    torch.testing.assert_close(rec.psnr(recon, target), expected_psnr, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(rec.ssim(recon, target), expected_ssim, atol=1e-5, rtol=1e-5)

    scales, sigma = rec.ms_ssim_config(size)
    betas = torch.tensor(rec.MS_SSIM_WEIGHTS[:scales])
    expected_ms = multiscale_structural_similarity_index_measure(
        x,
        y,
        data_range=1.0,
        reduction="none",
        betas=tuple((betas / betas.sum()).tolist()),
        kernel_size=2 * int(3.5 * sigma + 0.5) + 1,  # only checked by torchmetrics
        sigma=sigma,
        normalize="relu",
    )
    torch.testing.assert_close(rec.ms_ssim(recon, target), expected_ms, atol=1e-5, rtol=1e-5)


def test_ms_ssim_config_small_sizes():
    assert rec.ms_ssim_config(256) == (5, 1.5)  # the standard setting
    assert rec.ms_ssim_config(32) == (3, pytest.approx(1.5 * 7 / 11))
    assert rec.ms_ssim_config(8)[0] == 1
    with pytest.raises(ValueError, match="at least 7"):
        rec.ms_ssim_config(6)


def test_identical_images_score_perfectly():
    _, target = _pair(2, 32, seed=0)
    assert torch.isinf(rec.psnr(target, target)).all()
    torch.testing.assert_close(rec.ssim(target, target), torch.ones(2))
    torch.testing.assert_close(rec.ms_ssim(target, target), torch.ones(2))


def test_scores_worsen_with_noise():
    scores = [rec.reconstruction_metrics(*_pair(2, 32, seed=1, noise=s)) for s in (0.05, 0.3)]
    for name in ("psnr", "ssim", "ms_ssim"):
        assert (scores[0][name] > scores[1][name]).all()


class _L1(torch.nn.Module):
    metric_name = "l1_test"

    def forward(self, x, y):
        return (x - y).abs().flatten(1).mean(1)


def test_meter_streams_per_image_values_and_means():
    recon, target = _pair(5, 32, seed=2)
    meter = rec.ReconstructionMeter(perceptual=_L1())
    meter.update(recon[:3], target[:3])
    meter.update(recon[3:], target[3:])
    per_image = meter.per_image()
    oneshot = rec.reconstruction_metrics(recon, target, perceptual=_L1())
    assert set(per_image) == {"psnr", "ssim", "ms_ssim", "l1_test"}
    for name, values in oneshot.items():
        assert values.shape == (5,)
        torch.testing.assert_close(per_image[name], values)
        assert math.isclose(meter.compute()[name], values.mean().item(), rel_tol=1e-6)


def test_psnr_u8_agrees_with_torchmetrics_and_counts_only_masked_pixels():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 256, (3, 3, 8, 8), generator=g, dtype=torch.uint8)
    recon = torch.randint(0, 256, (3, 3, 8, 8), generator=g, dtype=torch.uint8)
    expected = peak_signal_noise_ratio(
        recon.double(), target.double(), data_range=255.0, reduction="none", dim=(1, 2, 3)
    )
    torch.testing.assert_close(rec.psnr_u8(recon, target), expected)
    mask = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    mask[:, :, :5, :3] = True  # a 5 x 3 tile padded to 8 x 8: the padding must not count
    padded = recon.clone()
    padded[:, :, 5:] = 0
    torch.testing.assert_close(
        rec.psnr_u8(padded, target, mask), rec.psnr_u8(recon[..., :5, :3], target[..., :5, :3])
    )
    assert torch.isinf(rec.psnr_u8(target, target)).all()
