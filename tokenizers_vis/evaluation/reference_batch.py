"""ADM-style reference batches (``.npz``): read the published layout, write our own.

Read (any of these, as guided-diffusion's ``evaluations/`` publishes them):
  * ``arr_0``: uint8 (n, h, w, 3) images, whose features we compute (streamed, cached);
  * ``mu`` / ``sigma`` (pool_3, 2048) and ``mu_s`` / ``sigma_s`` (spatial, 2023): statistics over
    the whole data set, used for FID / sFID in place of those of ``arr_0``. A published
    reference (``VIRTUAL_imagenet256_labeled.npz``) has both: statistics of all 1.28 M training
    images and 10,000 images for precision / recall.

Written by vistok (``vistok eval reference``): ``mu``, ``sigma``, ``mu_s``, ``sigma_s`` (float64,
ADM's names, so its evaluator reads the statistics too), plus ``pool`` (n, 2048) float32
features for precision / recall and KID, ``extractor_sha1`` (the sha1 of the Inception weights
file that made them; a file made with other weights is refused, since its features would not be
comparable) and ``vistok_meta`` (JSON: protocol, counts, failed files, the command). No images:
the file stays ~70 MB plus 8 kB per image. Written atomically.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tokenizers_vis.atomic import atomic_write_with
from tokenizers_vis.evaluation.inputs import EvaluationError
from tokenizers_vis.metrics.feature_statistics import GaussianStatistics
from tokenizers_vis.metrics.suite import ReferenceSide

__all__ = ["ReferenceBatchError", "ReferenceFile", "read_reference", "write_reference_file"]

# pool_3 (2048) and spatial (2023) statistics for the TF-Inception; checked for consistency.
STATS = ("mu", "sigma", "mu_s", "sigma_s")


class ReferenceBatchError(EvaluationError):
    """A reference ``.npz`` of the wrong layout, or made with other Inception weights."""


@dataclass
class ReferenceFile:
    """What a reference file holds, before any feature is computed.

    Attributes:
        path: the file.
        stats: pool / spatial statistics, or None (then they come from the images).
        pool: (n, 2048) stored pool features (vistok files), or None.
        has_images: whether ``arr_0`` holds images to compute features from.
        extractor_sha1: the weights' sha1 a vistok file records, or None (ADM's files).
        meta: vistok's JSON metadata, or {}.
    """

    path: Path
    stats: tuple[GaussianStatistics, GaussianStatistics] | None
    pool: torch.Tensor | None
    has_images: bool
    extractor_sha1: str | None
    meta: dict

    def side(self, pool=None, spatial=None) -> ReferenceSide:
        """The reference side of the suite; features of ``arr_0`` fill what the file lacks."""
        pool = self.pool if self.pool is not None else pool
        if self.stats is not None:
            return ReferenceSide(*self.stats, pool=pool)
        return ReferenceSide(
            GaussianStatistics.from_features(pool),
            GaussianStatistics.from_features(spatial),
            pool,
            spatial,
        )


def read_reference(path: str | Path, extractor_sha1: str) -> ReferenceFile:
    """Open a reference ``.npz`` and check its layout and extractor.

    Args:
        path: the file.
        extractor_sha1: sha1 of the Inception weights in use.

    Raises:
        ReferenceBatchError: unreadable, wrong layout, or another extractor's file.
    """
    path = Path(path)
    if not path.is_file():
        raise ReferenceBatchError(f"reference {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            recorded = str(npz["extractor_sha1"]) if "extractor_sha1" in names else None
            if recorded is not None and recorded != extractor_sha1:
                raise ReferenceBatchError(
                    f"reference {path} was made with Inception weights of sha1 {recorded}, "
                    f"not the {extractor_sha1} in use: its features are not comparable; "
                    "rebuild it with `vistok eval reference`"
                )
            stats = _stats(npz, names, path)
            pool = torch.from_numpy(npz["pool"].astype(np.float32)) if "pool" in names else None
            meta = json.loads(str(npz["vistok_meta"])) if "vistok_meta" in names else {}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        if isinstance(err, ReferenceBatchError):
            raise
        raise ReferenceBatchError(f"reference {path}: not a readable .npz: {err}") from None
    width = stats[0].dim if stats is not None else None
    if pool is not None and (pool.ndim != 2 or width not in (None, pool.shape[1])):
        raise ReferenceBatchError(
            f"reference {path}: pool features {tuple(pool.shape)} do not match mu ({width},)"
        )
    has_images = "arr_0" in names
    if stats is None and pool is None and not has_images:
        raise ReferenceBatchError(
            f"reference {path}: arrays {sorted(names)}; expected an ADM reference batch "
            "(arr_0 uint8 (n, h, w, 3) images and/or mu, sigma, mu_s, sigma_s statistics)"
        )
    if stats is None and not has_images:
        raise ReferenceBatchError(f"reference {path}: features without statistics or images")
    return ReferenceFile(path, stats, pool, has_images, recorded, meta)


def _stats(
    npz, names: set[str], path: Path
) -> tuple[GaussianStatistics, GaussianStatistics] | None:
    present = names & set(STATS)
    if not present:
        return None
    if present != set(STATS):
        raise ReferenceBatchError(
            f"reference {path}: has {sorted(present)} of the statistics {sorted(STATS)}; "
            "all four are needed"
        )
    out = []
    for mu_name, sigma_name in (("mu", "sigma"), ("mu_s", "sigma_s")):
        mu, sigma = npz[mu_name], npz[sigma_name]
        d = mu.shape[0] if mu.ndim == 1 else -1
        floats = all(np.issubdtype(a.dtype, np.floating) for a in (mu, sigma))
        if mu.ndim != 1 or sigma.shape != (d, d) or not floats:
            raise ReferenceBatchError(
                f"reference {path}: {mu_name} / {sigma_name} must be float (d,) and (d, d), got "
                f"{mu.dtype} {mu.shape} and {sigma.dtype} {sigma.shape}"
            )
        out.append(
            GaussianStatistics(
                torch.from_numpy(mu.astype(np.float64)), torch.from_numpy(sigma.astype(np.float64))
            )
        )
    return out[0], out[1]


def write_reference_file(
    path: str | Path, side: ReferenceSide, extractor_sha1: str, meta: dict
) -> Path:
    """Write a vistok reference file atomically (see the module docstring for its arrays)."""
    arrays = {
        "mu": side.pool_stats.mu.numpy(),
        "sigma": side.pool_stats.sigma.numpy(),
        "mu_s": side.spatial_stats.mu.numpy(),
        "sigma_s": side.spatial_stats.sigma.numpy(),
        "extractor_sha1": np.array(extractor_sha1),
        "vistok_meta": np.array(json.dumps(meta)),
    }
    if side.pool is not None:
        arrays["pool"] = side.pool.float().numpy()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez(path) would append ".npz" to tmp
            np.savez(f, **arrays)

    return atomic_write_with(Path(path), write)
