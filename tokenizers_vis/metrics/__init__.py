"""Evaluation metrics: functional and small, for ``vistok eval`` and training callbacks.

    from tokenizers_vis.layers.inception import load_tf_inception
    from tokenizers_vis.metrics import fid_kid, extract_features, reference_features

    inception = load_tf_inception(device="cuda")             # offline; never downloads
    ref = reference_features(val_loader, inception, dataset="emoji", split="val",
                             image_size=32, num_images=len(val_set))   # cached on disk
    recon = extract_features((tok.decode(tok.encode(x, num_tokens=k)) for x in val_images),
                             inception)
    fid_kid(ref, recon)                                      # {"fid", "kid_mean", ...}  rFID

The FID names are imported lazily, so ``metrics.usage`` etc. load without torchmetrics.
"""

from __future__ import annotations

from typing import Any

from tokenizers_vis.metrics.bd_rate import BjontegaardDelta, bd_quality, bd_rate, bjontegaard
from tokenizers_vis.metrics.rate import (
    CodecPoint,
    bits_per_token,
    codec_roundtrip,
    codec_sweep,
    interpolate_at_bytes,
    nearest_quality,
    token_bytes,
)
from tokenizers_vis.metrics.reconstruction import (
    ReconstructionMeter,
    ms_ssim,
    ms_ssim_config,
    psnr,
    reconstruction_metrics,
    ssim,
)
from tokenizers_vis.metrics.usage import CodebookUsage, codebook_usage, entropy_bits

_FID_NAMES = (
    "extract_features",
    "extractor_id",
    "fid_kid",
    "frechet_distance",
    "kernel_inception_distance",
    "reference_features",
    "reference_key",
)


def __getattr__(name: str) -> Any:
    if name in _FID_NAMES:
        from tokenizers_vis.metrics import fid

        return getattr(fid, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BjontegaardDelta",
    "CodebookUsage",
    "CodecPoint",
    "ReconstructionMeter",
    "bd_quality",
    "bd_rate",
    "bits_per_token",
    "bjontegaard",
    "codebook_usage",
    "codec_roundtrip",
    "codec_sweep",
    "entropy_bits",
    "interpolate_at_bytes",
    "ms_ssim",
    "ms_ssim_config",
    "nearest_quality",
    "psnr",
    "reconstruction_metrics",
    "ssim",
    "token_bytes",
    *_FID_NAMES,
]
