"""`evaluate_tokenizer` and `evaluate_generator`: the evaluation as a Python API.

    from tokenizers_vis.evaluation import evaluate_tokenizer, write_report
    result = evaluate_tokenizer("emoji32", "emoji", split="test", fid=False)
    result.rows            # one dict per k: k, bytes_per_image, psnr, ssim, ms_ssim, ...
    result.codecs["webp"]  # one dict per quality, the same metrics on whole WebP files
    result.equal_bytes()   # per k: each codec's metrics interpolated to k's bytes, where in range
    write_report(result, "out/eval/emoji32")  # report.json / .md, plots, a reconstruction grid

Tokenizer: the first N images of a split (or images you pass) are encoded once (K tokens;
`encode(num_tokens=k)` is that prefix) and decoded from every prefix k of the sweep (default
1, 2, 4, ..., K). Each k is scored against the originals: rFID and KID (TF-Inception features,
the originals' cached on disk), PSNR, SSIM, MS-SSIM, a perceptual distance, and its rate,
``k * sum_g log2(vocab_g) / 8`` bytes per image. The same images go through Pillow JPEG and
WebP at every quality (whole files, headers included; see ``metrics.rate``) and get the same
metrics. Codec rows do not depend on the tokenizer, so they are cached on disk (keyed by the
image bytes, codec library versions and metric code).

Generator: gFID / KID of samples against the first N images of a split at the samples' size.
Deterministic for a fixed seed and batch size (the seed drives sampling decoders and KID).
Mistakes in the inputs raise `EvaluationError` before anything long runs.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tokenizers_vis.evaluation import inputs, scoring
from tokenizers_vis.evaluation.cache import CodecCache
from tokenizers_vis.evaluation.inputs import EvaluationError
from tokenizers_vis.limits import Limits
from tokenizers_vis.precision import DeviceError, cpu_model_name, pick_device, resolve_precision

RATE_KEYS = ("k", "quality", "bits_per_image", "bytes_per_image", "seconds_per_image")


@dataclass
class TokenizerEvaluation:
    """What `evaluate_tokenizer` measured.

    Attributes:
        model: name, path (None for an in-memory model) and config of the tokenizer.
        tokenizer: image_size, max_tokens, vocab_sizes, bits_per_token.
        rows: one dict per k (k, bits_per_image, bytes_per_image and every metric).
        codecs: codec name -> one dict per quality (quality, bytes_per_image, metrics).
        usage: codebook usage and perplexity of all K tokens, per sub-codebook and position.
        perceptual: the perceptual distance's metric name, or None.
        fid: whether rFID / KID were measured.
        encode: how tokens were made (refine_steps, refine_lr).
        meta: the run: data, split, images, seed, device, precision, CPU, versions, wall time.
        grid: (label, images (b 3 h w) in [-1, 1]) rows of the reconstruction grid.
    """

    model: dict[str, Any]
    tokenizer: dict[str, Any]
    rows: list[dict[str, float]]
    codecs: dict[str, list[dict[str, float]]]
    usage: dict[str, Any]
    perceptual: str | None
    fid: bool
    encode: dict[str, Any]
    meta: dict[str, Any]
    grid: list[tuple[str, Tensor]] = field(default_factory=list, repr=False)

    def row(self, k: int) -> dict[str, float]:
        """The row of token count k."""
        for row in self.rows:
            if row["k"] == k:
                return row
        raise KeyError(f"k={k} was not evaluated; evaluated: {[r['k'] for r in self.rows]}")

    def equal_bytes(self) -> list[dict[str, Any]]:
        """Per k and codec: metrics interpolated to k's bytes where k lies inside the codec's
        measured byte range (None outside it: below a codec's smallest file there is nothing to
        compare with), and the quality whose bytes are nearest."""
        from tokenizers_vis.metrics import interpolate_at_bytes

        metrics = [m for m in self.rows[0] if m not in RATE_KEYS]
        out = []
        for row in self.rows:
            entry: dict[str, Any] = {"k": row["k"], "bytes_per_image": row["bytes_per_image"]}
            for codec, rows in self.codecs.items():
                xs = [r["bytes_per_image"] for r in rows]
                inside = min(xs) <= row["bytes_per_image"] <= max(xs)
                interp = {
                    m: interpolate_at_bytes(xs, [r[m] for r in rows], row["bytes_per_image"])
                    for m in metrics
                }
                nearest = min(
                    rows, key=lambda r: abs(r["bytes_per_image"] - row["bytes_per_image"])
                )
                entry[codec] = {"nearest": nearest, "interpolated": interp if inside else None}
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report.json layout."""
        return {
            "kind": "tokenizer",
            "model": self.model,
            "tokenizer": self.tokenizer,
            "perceptual": self.perceptual,
            "fid": self.fid,
            "vistok": self.rows,
            "codebook_usage": self.usage,
            "codecs": self.codecs,
            "codecs_at_k": self.equal_bytes() if self.codecs else [],
            "encode": self.encode,
            "meta": self.meta,
        }


@dataclass
class GeneratorEvaluation:
    """What `evaluate_generator` measured: gFID and KID of samples against a data split."""

    gfid: float
    kid_mean: float
    kid_std: float
    samples: dict[str, Any]
    reference_size: int
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "generator",
            "samples": self.samples,
            "reference_size": self.reference_size,
            "gfid": self.gfid,
            "kid_mean": self.kid_mean,
            "kid_std": self.kid_std,
            "meta": self.meta,
        }


def _device(device: str | torch.device) -> torch.device:
    try:
        return pick_device(str(device))
    except DeviceError as err:
        raise EvaluationError(str(err)) from None


def _model(model, device: torch.device, limits: Limits | None = None):
    from tokenizers_vis.tokenizer import Tokenizer

    if isinstance(model, Tokenizer):
        return model.to(device).eval(), {"name": "(in memory)", "path": None}
    tok = inputs.load_model(str(model), device, limits)
    from tokenizers_vis.hub import resolve

    return tok, {"name": str(model), "path": str(resolve(model).resolve())}


def _images(data, split: str, size: int, num_images: int | None, seed: int, progress: bool):
    """(uint8 images (n 3 s s), canonical spec or None when images were passed in)."""
    if isinstance(data, Tensor):
        from tokenizers_vis.data.transforms import to_uint8

        images = data if data.dtype == torch.uint8 else to_uint8(data)
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise EvaluationError(f"images must be (n, 3, {size}, {size}), got {tuple(data.shape)}")
        if images.shape[0] < 2:
            raise EvaluationError(f"{images.shape[0]} images; need at least 2")
        return images[:num_images].cpu(), None
    spec = inputs.canonical_spec(str(data))
    return inputs.load_split(spec, split, size, num_images, seed, not progress), spec


def run_meta(spec: str | None, split: str, n: int, device, precision: str, **extra) -> dict:
    """What a report says about the run that made it (every timing names its machine)."""
    from tokenizers_vis import __version__

    return {
        "data": spec or "(images passed in)",
        "split": split if spec else None,
        "num_images": n,
        "device": str(device),
        "precision": resolve_precision(precision, device).name,
        "cpu": cpu_model_name(),
        "torch": torch.__version__,
        "vistok": __version__,
        "python": platform.python_version(),
        **extra,
    }


def evaluate_tokenizer(
    model,
    data: str | Tensor,
    *,
    split: str = "test",
    num_images: int | None = None,
    ks: Sequence[int] | None = None,
    codecs: str | Sequence[str] = ("jpeg", "webp"),
    qualities: Sequence[int] | None = None,
    fid: bool = True,
    perceptual: str = "inception",
    refine_steps: int = 0,
    refine_lr: float = 0.1,
    num_steps: int | None = None,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    precision: str = "auto",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    codec_cache: bool = True,
    grid_images: int = 8,
    progress: bool = False,
    limits: Limits | None = None,
) -> TokenizerEvaluation:
    """Sweep a tokenizer over token counts and compare it with JPEG / WebP on the same images.

    Args:
        model: a `Tokenizer`, a pretrained directory or a shipped model's name.
        data: a data spec ("emoji", "photos", "folder:DIR", "shards:...") or uint8 images
            (n, 3, s, s) at the tokenizer's size (no reference-feature cache then).
        split: split of a data spec.
        num_images: the first N images (default all).
        ks: token counts (default 1, 2, 4, ..., K).
        codecs: baselines, "jpeg" and / or "webp"; () or "none" for none.
        qualities: codec qualities (default `metrics.rate.DEFAULT_QUALITIES`).
        fid: measure rFID / KID (TF-Inception, offline).
        perceptual: "inception", "lpips_vgg", "auto" or "none".
        refine_steps: encoder-side refinement steps (slower encode, same bytes).
        num_steps: sampling steps of a sampling decoder (rectified flow; default: the model's).
        precision: "auto" (bf16 only where the hardware runs it natively), "bf16" or "fp32".
        cache_dir: root of the reference-feature and codec caches (default vistok's).
        codec_cache: reuse and store codec rows.
        progress: show progress bars.
        limits: input limits for loading `model` (default `limits.DEFAULT_LIMITS`).
    """
    start = time.time()
    dev = _device(device)
    tok, identity = _model(model, dev, limits)
    resolve_precision(precision, dev)  # a bad name fails here, before anything runs
    ks = inputs.sweep_ks(ks, tok.max_tokens)
    plan = inputs.codec_plan(codecs, qualities)
    if perceptual not in inputs.PERCEPTUAL_KINDS:
        raise EvaluationError(f"perceptual must be one of {inputs.PERCEPTUAL_KINDS}")
    images, spec = _images(data, split, tok.image_size, num_images, seed, progress)
    extractor, extractor_info = inputs.load_extractor(inputs.needs_inception(fid, perceptual))
    meter_perceptual = inputs.load_perceptual(perceptual, extractor)
    root = Path(cache_dir) if cache_dir is not None else None
    ref = None
    if fid:
        ref = scoring.reference(
            images,
            extractor,
            spec,
            split,
            batch_size,
            _cache(root, "fid_reference"),
            dev,
            progress,
        )
    scorer = scoring.Scorer(
        images, batch_size, dev, extractor if fid else None, ref, meter_perceptual, seed, progress
    )
    ids = scoring.encode_all(tok, images, batch_size, precision, refine_steps, refine_lr, progress)
    rows = scoring.sweep_tokens(tok, ids, ks, scorer, seed, precision, num_steps)
    # Timings vary run to run; the rows stay deterministic and the timings go to the run's meta.
    timings = {str(r["k"]): round(r.pop("seconds_per_image"), 6) for r in rows}
    perceptual_name = getattr(meter_perceptual, "metric_name", None)
    context = {
        "fid": fid,
        "extractor": extractor_info and extractor_info["id"],
        "perceptual": perceptual_name,
        "seed": seed,
    }
    cache = CodecCache(_cache(root, "codec_baselines") if codec_cache else None, images, context)
    codec_rows = scoring.sweep_codecs(plan, scorer, cache)
    grid = scoring.reconstruction_rows(tok, ids, images, ks, seed, grid_images, num_steps)
    meta = run_meta(
        spec, split, images.shape[0], dev, precision, seed=seed, batch_size=batch_size,
        extractor=extractor_info, codec_rows_from_cache=cache.hits,
        decode_and_score_seconds_per_image=timings,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        wall_time_s=round(time.time() - start, 3),
    )  # fmt: skip
    return TokenizerEvaluation(
        model={**identity, "config": tok.config},
        tokenizer=_tokenizer_info(tok),
        rows=rows,
        codecs=codec_rows,
        usage=usage_summary(ids, tok.vocab_sizes),
        perceptual=perceptual_name,
        fid=fid,
        encode={"refine_steps": refine_steps, "refine_lr": refine_lr, "num_steps": num_steps},
        meta=meta,
        grid=grid,
    )


def _cache(root: Path | None, name: str) -> Path:
    from tokenizers_vis.cache import cache_dir as vistok_cache

    return (root if root is not None else vistok_cache()) / name


def _tokenizer_info(tok) -> dict[str, Any]:
    from tokenizers_vis.metrics import bits_per_token

    return {
        "image_size": tok.image_size,
        "max_tokens": tok.max_tokens,
        "vocab_sizes": list(tok.vocab_sizes),
        "bits_per_token": bits_per_token(tok.vocab_sizes),
    }


def usage_summary(ids: Tensor, vocab_sizes: tuple[int, ...]) -> dict:
    """Codebook usage and perplexity, per sub-codebook and per position, of all K tokens."""
    from tokenizers_vis.metrics import CodebookUsage

    meter = CodebookUsage(vocab_sizes)
    meter.update(ids)
    stats = meter.compute()
    keep = ("usage", "entropy", "perplexity", "usage_per_position", "perplexity_per_position")
    out = {name: stats[name].tolist() for name in keep}
    out.update(k=ids.shape[1], usage_mean=stats["usage_mean"], num_tokens=stats["num_tokens"])
    out["perplexity_mean"] = stats["perplexity_mean"]
    return out


def evaluate_generator(
    samples: str | Path | Tensor,
    data: str,
    *,
    split: str = "test",
    num_images: int | None = None,
    size: int | None = None,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> GeneratorEvaluation:
    """gFID / KID of `samples` (a folder of images, an .npz of one uint8 array, or uint8
    (n, 3, h, w)) against the first `num_images` of a data split at `size` (default: samples')."""
    from tokenizers_vis.metrics import extract_features, fid_kid

    start = time.time()
    dev = _device(device)
    if isinstance(samples, Tensor):
        images_s, where = inputs.check_samples(samples, "samples"), "(tensor)"
    else:
        images_s, where = inputs.load_samples(Path(samples)), str(Path(samples).resolve())
    spec = inputs.canonical_spec(data)
    size = size or images_s.shape[-1]
    images = inputs.load_split(spec, split, size, num_images, seed, not progress)
    extractor, extractor_info = inputs.load_extractor(True)
    root = Path(cache_dir) if cache_dir is not None else None
    ref = scoring.reference(
        images, extractor, spec, split, batch_size, _cache(root, "fid_reference"), dev, progress
    )
    parts = (images_s[i : i + batch_size] for i in range(0, images_s.shape[0], batch_size))
    feats = extract_features(parts, extractor, dev, progress, desc="samples")
    subsets = scoring.kid_subsets(ref.shape[0], feats.shape[0])
    stats = fid_kid(ref, feats, kid_subsets=subsets, seed=seed)
    meta = run_meta(
        spec, split, images.shape[0], dev, "fp32", seed=seed, batch_size=batch_size,
        extractor=extractor_info, wall_time_s=round(time.time() - start, 3),
    )  # fmt: skip
    return GeneratorEvaluation(
        gfid=stats["fid"],
        kid_mean=stats["kid_mean"],
        kid_std=stats["kid_std"],
        samples={
            "path": where,
            "num_samples": images_s.shape[0],
            "size": list(images_s.shape[-2:]),
        },
        reference_size=size,
        meta=meta,
    )
