"""Per-image reconstruction metrics: PSNR, SSIM, MS-SSIM and an optional perceptual distance.

SSIM follows Wang et al. 2004, "Image Quality Assessment: From Error Visibility to Structural
Similarity"; MS-SSIM follows Wang, Simoncelli & Bovik 2003, "Multiscale Structural Similarity for
Image Quality Assessment". Numbers agree with ``torchmetrics.functional.image`` (tests check it):
a Gaussian window truncated at 3.5 sigma (11 px for sigma 1.5), reflect padding, SSIM averaged over
every pixel, the contrast-structure term over the unpadded interior, negative terms clamped to 0
before the MS-SSIM powers (torchmetrics' ``normalize="relu"``).

What we changed: MS-SSIM is defined at small sizes. Its standard 5 scales and 11 px window need
images of at least 176 px (the coarsest scale must hold the window). :func:`ms_ssim_config` takes
the most scales (5 down to 1) whose coarsest image still holds a window of 11, 9 or 7 px (largest
first; sigma scaled with the window), and uses the first standard weights renormalised to sum to 1
so the score stays on SSIM's scale: 256 px -> 5 scales/11 px (the standard), 128 -> 5/7,
64 -> 4/7, 32 -> 3/7 (sigma ~0.95), 16 -> 2/7, 8 -> 1/7 (plain SSIM).

All metrics take images in [-1, 1], map them to [0, 1] and clamp (decoders may overshoot; what a
viewer sees is the clamped image), and use a data range of 1. `psnr_u8` is the same PSNR on
8-bit images as a file holds them (the codec's adaptive length and its measurements use it),
optionally over a mask of valid pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import reduce
from torch import Tensor, nn

from tokenizers_vis.data import transforms

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_K1, _K2 = 0.01, 0.03


def to_unit(x: Tensor) -> Tensor:
    """(b, c, h, w) in [-1, 1] -> float32 in [0, 1], clamped."""
    return transforms.to_unit(x).clamp(0, 1)


def psnr(recon: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per image (``inf`` for identical images).

    Args:
        recon, target: (b, c, h, w) in [-1, 1].

    Returns:
        (b,) float32.
    """
    mse = reduce((to_unit(recon) - to_unit(target)) ** 2, "b c h w -> b", "mean")
    return psnr_from_mse(mse, 1.0)


def psnr_from_mse(mse: Tensor, data_range: float) -> Tensor:
    """10 log10(range^2 / mse) dB: the one PSNR formula (``inf`` where mse is 0)."""
    return 10 * torch.log10(data_range**2 / mse)


def psnr_u8(recon: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """PSNR in dB per image of 8-bit images, computed in float64.

    Args:
        recon, target: (b, c, h, w) uint8.
        mask: (b, 1, h, w) bool, the pixels that count (e.g. a tile's real pixels, edge padding
            excluded); None: all.

    Returns:
        (b,) float64, ``inf`` for identical images.
    """
    diff = (recon.double() - target.double()).square()  # (b c h w)
    if mask is None:
        return psnr_from_mse(diff.mean(dim=(1, 2, 3)), 255.0)
    count = recon.shape[1] * mask.sum(dim=(1, 2, 3)).double()  # (b,) values that count
    return psnr_from_mse((diff * mask).sum(dim=(1, 2, 3)) / count, 255.0)


def _gaussian_window(sigma: float, channels: int, like: Tensor) -> Tensor:
    half = int(3.5 * sigma + 0.5)  # truncate at 3.5 sigma, as torchmetrics and skimage do
    dist = torch.arange(-half, half + 1, dtype=like.dtype, device=like.device)
    g = torch.exp(-((dist / sigma) ** 2) / 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, 2 * half + 1, 2 * half + 1)


def _ssim_and_cs(x: Tensor, y: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """SSIM over all pixels and contrast-structure over the interior; (b,) each. x, y in [0, 1]."""
    b, c = x.shape[:2]
    window = _gaussian_window(sigma, c, x)  # (c, 1, k, k)
    pad = window.shape[-1] // 2
    stack = torch.cat([x, y, x * x, y * y, x * y])  # (5b, c, h, w)
    stats = F.conv2d(F.pad(stack, (pad,) * 4, mode="reflect"), window, groups=c)
    mu_x, mu_y, xx, yy, xy = stats.split(b)  # each (b, c, h, w)
    var_x = (xx - mu_x**2).clamp(min=0)
    var_y = (yy - mu_y**2).clamp(min=0)
    cov = xy - mu_x * mu_y
    c1, c2 = _K1**2, _K2**2
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    h, w = x.shape[-2:]
    interior = cs[..., pad : h - pad, pad : w - pad]
    return reduce(ssim_map, "b c h w -> b", "mean"), reduce(interior, "b c h w -> b", "mean")


def ssim(recon: Tensor, target: Tensor, sigma: float = 1.5) -> Tensor:
    """Structural similarity per image (Gaussian window of 2 * int(3.5 sigma + 0.5) + 1 px).

    Args:
        recon, target: (b, c, h, w) in [-1, 1]; h, w larger than the window's half width.
        sigma: window standard deviation.

    Returns:
        (b,) float32, 1 for identical images.
    """
    return _ssim_and_cs(to_unit(recon), to_unit(target), sigma)[0]


def ms_ssim_config(size: int) -> tuple[int, float]:
    """(number of scales, window sigma) for images whose shorter side is ``size``.

    Raises:
        ValueError: images under 7 px.
    """
    for scales in range(len(MS_SSIM_WEIGHTS), 0, -1):
        for window in (11, 9, 7):
            if size // 2 ** (scales - 1) >= window:
                # 1.5 px per 11 px window; 3.5-sigma truncation then gives back `window`.
                return scales, 1.5 * window / 11
    raise ValueError(f"MS-SSIM needs images of at least 7 px, got {size}")


def ms_ssim(recon: Tensor, target: Tensor) -> Tensor:
    """Multi-scale SSIM per image, with scales and window chosen by :func:`ms_ssim_config`.

    Args:
        recon, target: (b, c, h, w) in [-1, 1], h and w >= 7.

    Returns:
        (b,) float32 in [0, 1], 1 for identical images.
    """
    x, y = to_unit(recon), to_unit(target)
    scales, sigma = ms_ssim_config(min(x.shape[-2:]))
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=x.device)
    weights = weights / weights.sum()
    terms = []
    for scale in range(scales):
        sim, cs = _ssim_and_cs(x, y, sigma)
        # Contrast-structure at every scale but the coarsest, which also carries luminance.
        terms.append((sim if scale == scales - 1 else cs).relu())
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(terms)  # (scales, b)
    return torch.prod(stacked ** weights[:, None], dim=0)


def reconstruction_metrics(
    recon: Tensor, target: Tensor, perceptual: nn.Module | None = None
) -> dict[str, Tensor]:
    """PSNR, SSIM, MS-SSIM and optionally a perceptual distance, per image.

    Args:
        recon, target: (b, 3, h, w) in [-1, 1].
        perceptual: a module mapping (recon, target) to (b,) distances, e.g.
            ``tokenizers_vis.losses.perceptual.load_perceptual()``; its ``metric_name`` names
            the entry, so reports say which distance was used.

    Returns:
        {"psnr", "ssim", "ms_ssim"[, perceptual name]} -> (b,) float32 on CPU.
    """
    out = {
        "psnr": psnr(recon, target),
        "ssim": ssim(recon, target),
        "ms_ssim": ms_ssim(recon, target),
    }
    if perceptual is not None:
        with torch.no_grad():
            out[getattr(perceptual, "metric_name", "perceptual")] = perceptual(recon, target)
    return {name: value.detach().float().cpu() for name, value in out.items()}


class ReconstructionMeter:
    """Streams :func:`reconstruction_metrics` over batches; keeps every per-image value."""

    def __init__(self, perceptual: nn.Module | None = None) -> None:
        self.perceptual = perceptual
        self._values: dict[str, list[Tensor]] = {}

    def update(self, recon: Tensor, target: Tensor) -> None:
        """Add a batch: recon, target (b, 3, h, w) in [-1, 1]."""
        for name, value in reconstruction_metrics(recon, target, self.perceptual).items():
            self._values.setdefault(name, []).append(value)

    def per_image(self) -> dict[str, Tensor]:
        """Metric name -> (n,) values over all images seen."""
        return {name: torch.cat(values) for name, values in self._values.items()}

    def compute(self) -> dict[str, float]:
        """Metric name -> mean over images (PSNR is the mean of per-image dB values)."""
        return {name: values.mean().item() for name, values in self.per_image().items()}
