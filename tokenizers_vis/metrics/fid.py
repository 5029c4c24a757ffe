"""rFID / gFID and KID, offline, with reference statistics cached on disk.

FID: Heusel et al. 2017 (TTUR); KID: Binkowski et al. 2018, "Demystifying MMD GANs". rFID compares
reconstructions of a split with that split; gFID compares generated samples with a reference split.
Both are :func:`fid_kid` on two feature sets: features of the reference split come from
:func:`reference_features` (computed once, cached under a key of dataset spec, split, image size,
number of images and ``extractor.extractor_id``, so a different extractor never reuses them), the
other side from :func:`extract_features`. Images are quantised with ``to_uint8`` first, as saved
samples would be, and fed to the extractor in torchmetrics' ``normalize=False`` convention.

What we changed from torchmetrics: the extractor is injected (normally the offline TF-Inception
from ``tokenizers_vis.layers.inception.load_tf_inception``). KID is torchmetrics'
``KernelInceptionDistance`` on cached features, with its subset sampling seeded inside
``torch.random.fork_rng`` (deterministic, and the caller's global RNG is untouched). FID uses the
formula of torchmetrics' ``_compute_fid`` (tests check agreement) but gets ``Tr sqrt(S_r S_f)``
from symmetric problems: torchmetrics runs a general eigensolver on the 2048x2048 product, 10 s on
2 CPU cores and noisy when it is rank deficient. The nonzero spectrum of ``S_r S_f`` is that of
the n_r x n_f matrix ``A B^T`` of centred features (squared singular values), used when that
matrix is no larger than a covariance (few images); otherwise ``sqrt(S_r)`` comes from ``eigh``
and the trace from the symmetric ``sqrt(S_r) S_f sqrt(S_r)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from tokenizers_vis.atomic import atomic_write_with
from tokenizers_vis.cache import cache_dir as vistok_cache
from tokenizers_vis.data.transforms import to_uint8

__all__ = [
    "extract_features",
    "extractor_id",
    "fid_kid",
    "frechet_distance",
    "kernel_inception_distance",
    "reference_features",
    "reference_key",
]


def _images(batch: Tensor | tuple | list | Mapping) -> Tensor:
    if isinstance(batch, Mapping):
        return batch["image"] if "image" in batch else batch["images"]
    return batch[0] if isinstance(batch, tuple | list) else batch


@torch.no_grad()
def extract_features(
    batches: Iterable,
    extractor: nn.Module,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "features",
) -> Tensor:
    """Features of every image in ``batches``.

    Args:
        batches: yields (b, 3, h, w) images, float in [-1, 1] or uint8; or tuples / lists whose
            first element, or dicts whose "image(s)" entry, is such a tensor (DataLoader output).
        extractor: uint8 (b, 3, h, w) -> (b, d) features, e.g. ``load_tf_inception()``. Moved to
            ``device`` when given.
        device: where to run the extractor.
        progress: show a tqdm bar.
        desc: the bar's label.

    Returns:
        (n, d) float32 on CPU, in input order.
    """
    if device is not None:
        extractor.to(device)
    device = next(extractor.parameters(), torch.empty(0)).device
    total = len(batches) if hasattr(batches, "__len__") else None
    out = []
    for batch in tqdm(batches, desc=desc, total=total, disable=not progress):
        images = _images(batch)
        images = images if images.dtype == torch.uint8 else to_uint8(images)  # (b 3 h w) uint8
        out.append(extractor(images.to(device)).float().cpu())  # (b d)
    if not out:
        raise ValueError("no images to extract features from")
    return torch.cat(out)


def extractor_id(extractor: nn.Module) -> str:
    """``extractor.extractor_id`` when it has one, else a digest of its class and weights."""
    if hasattr(extractor, "extractor_id"):
        return str(extractor.extractor_id)
    h = hashlib.sha1(type(extractor).__qualname__.encode())
    for name, tensor in sorted(extractor.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{type(extractor).__name__}-sha1-{h.hexdigest()[:16]}"


def reference_key(
    extractor: nn.Module, dataset: str | Mapping, split: str, image_size: int, num_images: int
) -> dict[str, str | int]:
    """The cache key of a reference split's features (JSON-able)."""
    spec = dataset if isinstance(dataset, str) else json.dumps(dataset, sort_keys=True)
    return {
        "dataset": spec,
        "split": split,
        "image_size": int(image_size),
        "num_images": int(num_images),
        "extractor": extractor_id(extractor),
    }


def reference_features(
    batches: Iterable,
    extractor: nn.Module,
    *,
    dataset: str | Mapping,
    split: str,
    image_size: int,
    num_images: int,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> Tensor:
    """Features of a reference split, from the cache when its key matches, else computed.

    Args:
        batches: the split's images, as for :func:`extract_features`; only iterated on a miss
            (pass a DataLoader or a generator, not a list built eagerly).
        extractor: the feature extractor; its id is part of the key.
        dataset, split, image_size, num_images: describe the split (dataset may be a spec dict).
        cache_dir: default ``tokenizers_vis.cache.cache_dir("fid_reference")``.
        device, progress: as for :func:`extract_features`.

    Returns:
        (num_images, d) float32 on CPU.

    Raises:
        ValueError: the batches held a different number of images than ``num_images``.
    """
    key = reference_key(extractor, dataset, split, image_size, num_images)
    key_json = json.dumps(key, sort_keys=True)
    root = Path(cache_dir) if cache_dir is not None else vistok_cache("fid_reference")
    path = root / f"{hashlib.sha256(key_json.encode()).hexdigest()[:24]}.safetensors"
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") == key_json:
                return f.get_tensor("features")
    features = extract_features(batches, extractor, device, progress, desc=f"reference {split}")
    if features.shape[0] != num_images:
        raise ValueError(f"{split}: got {features.shape[0]} images, the key says {num_images}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, metadata = {"features": features.contiguous()}, {"key": key_json}
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return features


def _trace_sqrt_product(a: Tensor, b: Tensor) -> Tensor:
    """Tr sqrt(S_a S_b) for centred features a (n_a, d), b (n_b, d), S = x^T x / (n - 1)."""
    scale = math.sqrt((a.shape[0] - 1) * (b.shape[0] - 1))
    if a.shape[0] * b.shape[0] <= a.shape[1] ** 2:  # the n_a x n_b problem is the smaller one
        # S_a S_b = A^T (A B^T) B / scale^2 shares its nonzero eigenvalues with M M^T,
        # M = A B^T / scale, so their square roots are M's singular values.
        return torch.linalg.svdvals(a @ b.T).sum() / scale
    cov_a, cov_b = a.T @ a / (a.shape[0] - 1), b.T @ b / (b.shape[0] - 1)
    lam, vec = torch.linalg.eigh(cov_a)
    root_a = (vec * lam.clamp(min=0).sqrt()) @ vec.T  # sqrt(S_a), symmetric
    # sqrt(S_a) S_b sqrt(S_a) is symmetric PSD and similar to S_a S_b.
    return torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    Args:
        real: (n_r, d) features, n_r >= 2.
        fake: (n_f, d) features, n_f >= 2.

    Returns:
        ``|mu_r - mu_f|^2 + Tr(S_r) + Tr(S_f) - 2 Tr sqrt(S_r S_f)``, computed in float64.
    """
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError("FID needs at least 2 samples on each side")
    real, fake = real.double(), fake.double()
    mu_r, mu_f = real.mean(0), fake.mean(0)
    a, b = real - mu_r, fake - mu_f  # centred (n d)
    trace_r = a.square().sum() / (a.shape[0] - 1)
    trace_f = b.square().sum() / (b.shape[0] - 1)
    fid = (mu_r - mu_f).square().sum() + trace_r + trace_f - 2 * _trace_sqrt_product(a, b)
    return fid.item()


class _Precomputed(nn.Module):
    """Lets torchmetrics' metrics take features we already have (and cached)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def kernel_inception_distance(
    real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over random subsets) with torchmetrics, deterministically.

    Args:
        real: (n_r, d) features. fake: (n_f, d) features.
        subsets: number of random subsets.
        subset_size: capped at min(n_r, n_f).
        seed: seeds the subset draws (inside ``fork_rng``; the global RNG is left as it was).
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, real.shape[0], fake.shape[0])
    with warnings.catch_warnings():  # "will save all extracted features": we hold them anyway
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        kid = KernelInceptionDistance(
            _Precomputed(real.shape[1]), subsets=subsets, subset_size=size
        )
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return mean.item(), std.item()


def fid_kid(
    real: Tensor,
    fake: Tensor,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """FID and KID of two feature sets.

    Args:
        real: (n_r, d) reference features, e.g. from :func:`reference_features`.
        fake: (n_f, d) features of reconstructions (rFID) or samples (gFID).
        kid_subsets, kid_subset_size, seed: see :func:`kernel_inception_distance`.

    Returns:
        {"fid", "kid_mean", "kid_std", "num_real", "num_fake"}.
    """
    kid_mean, kid_std = kernel_inception_distance(real, fake, kid_subsets, kid_subset_size, seed)
    return {
        "fid": frechet_distance(real, fake),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "num_real": float(real.shape[0]),
        "num_fake": float(fake.shape[0]),
    }
