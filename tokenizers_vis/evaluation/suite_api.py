"""The field's suite as a Python API: reference batches, and tokenizers / generators scored under
a named protocol (FID, sFID, Inception Score, precision / recall, KID; PSNR / SSIM per k).

    from tokenizers_vis.evaluation.suite_api import (
        make_reference, evaluate_generator_suite, evaluate_tokenizer_suite)
    make_reference("folder:/data/imagenet/val", "ref.npz", protocol="imagenet256")
    evaluate_generator_suite("samples.npz", "ref.npz", protocol="imagenet256").rows
    evaluate_tokenizer_suite("my_tok", "folder:/data/imagenet/val", protocol="imagenet256")

Every pass streams (`evaluation.streaming`): one batch of images in memory, features kept
(~20 kB per image and image set), per-batch results cached so an interrupted run resumes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tokenizers_vis.evaluation import inputs
from tokenizers_vis.evaluation.feature_cache import BatchCache
from tokenizers_vis.evaluation.inputs import EvaluationError
from tokenizers_vis.evaluation.protocol import Protocol, get_protocol
from tokenizers_vis.evaluation.reference_batch import (
    read_reference,
    write_reference_file,
)
from tokenizers_vis.evaluation.sources import NpzSource, open_source
from tokenizers_vis.evaluation.streaming import PassResult, stream_pass
from tokenizers_vis.limits import Limits
from tokenizers_vis.metrics.inception_features import FeatureSet, batch_features
from tokenizers_vis.metrics.suite import ReferenceSide, suite_metrics

__all__ = [
    "SuiteEvaluation",
    "evaluate_generator_suite",
    "evaluate_tokenizer_suite",
    "make_reference",
]


@dataclass
class SuiteEvaluation:
    """What a suite evaluation measured.

    Attributes:
        kind: "tokenizer", "generator" or "reference".
        protocol: the protocol's settings (or a description of the ad-hoc preprocessing).
        rows: one dict of metrics per k (tokenizer) or one (generator).
        meta: the run: inputs, image counts, failed files, extractor sha1, device, timings.
    """

    kind: str
    protocol: dict[str, Any]
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "protocol": self.protocol, "rows": self.rows, "meta": self.meta}


def _setup(device, protocol: str | None):
    from tokenizers_vis.evaluation.api import _device

    dev = _device(device)
    proto = get_protocol(protocol) if protocol else None
    net, info = inputs.load_extractor(True)  # info["sha1"]: inputs.source_sha1's
    return dev, proto, net.to(dev), info


def _cache(cache_dir, use: bool) -> Path | None:
    from tokenizers_vis.evaluation.api import _cache as cache_root

    return cache_root(Path(cache_dir) if cache_dir else None, "eval_batches") if use else None


def _code_digest() -> str:
    """Digest of the code that makes cached per-batch results: a fix there never serves stale
    features."""
    import hashlib

    import tokenizers_vis.evaluation.center_crop as crop
    import tokenizers_vis.layers.inception as inception
    import tokenizers_vis.metrics.inception_features as features
    import tokenizers_vis.metrics.reconstruction as reconstruction
    import tokenizers_vis.metrics.sfid as sfid

    h = hashlib.sha1()
    for module in (crop, inception, features, reconstruction, sfid):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def _features_pass(source, net, info, proto, batch_size, cache_root, progress, desc) -> PassResult:
    key = {
        "code": _code_digest(),
        "pass": "features",
        "source": source.identity(),
        "batch_size": batch_size,
        "protocol": proto.describe() if proto else None,
        "extractor_sha1": info["sha1"],
    }
    return stream_pass(
        source,
        batch_size,
        lambda _, images: batch_features(net, images).tensors(),
        BatchCache(cache_root, key),
        progress,
        desc,
    )


def _protocol_info(proto: Protocol | None, size: int | None) -> dict:
    return (
        proto.describe()
        if proto
        else {"name": None, "image_size": size, "preprocessing": "the data spec's own transform"}
    )


def _counts(result: PassResult, total: int) -> dict:
    return {
        "images": len(result),
        "listed": total,
        "failed": len(result.failed),
        "failed_files": [list(f) for f in result.failed[:100]],
        "cached_batches": result.cached_batches,
    }


def make_reference(
    data: str,
    out: str | Path,
    *,
    protocol: str | None = None,
    split: str = "test",
    size: int | None = None,
    num_images: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
    command: str | None = None,
) -> SuiteEvaluation:
    """Write an ADM-style reference ``.npz`` (statistics + pool features) for ``data``."""
    start = time.time()
    dev, proto, net, info = _setup(device, protocol)
    source = open_source(data, proto, split, size, num_images)
    if isinstance(source, NpzSource) and proto is not None:
        _check_size(source, proto)
    result = _features_pass(
        source, net, info, proto, batch_size, _cache(cache_dir, use_cache), progress, "reference"
    )
    features = FeatureSet.from_tensors(result.tensors)
    if len(features) < 2:
        raise EvaluationError(f"data {data}: {len(features)} readable images; need at least 2")
    meta = {
        "data": str(data),
        "split": split,
        **_counts(result, len(source)),
        "protocol": _protocol_info(proto, size),
        "extractor": info,
        "command": command,
        "wall_time_s": round(time.time() - start, 3),
    }
    write_reference_file(out, ReferenceSide.from_features(features), info["sha1"], meta)
    return SuiteEvaluation("reference", meta["protocol"], [], {**meta, "written": str(out)})


def _check_size(source: NpzSource, proto: Protocol) -> None:
    if source.shape[1:3] != (proto.image_size, proto.image_size):
        raise EvaluationError(
            f"{source.path}: images are {source.shape[1]}x{source.shape[2]}; "
            f"protocol {proto.name} is {proto.image_size} px"
        )


def _reference_side(path, net, info, proto, batch_size, cache_root, progress):
    ref = read_reference(path, info["sha1"])
    pool = spatial = None
    count = len(ref.pool) if ref.pool is not None else None
    if ref.pool is None and ref.has_images:  # ADM's files: features of arr_0 for P / R
        source = NpzSource(ref.path)
        if proto is not None:
            _check_size(source, proto)
        result = _features_pass(
            source, net, info, proto, batch_size, cache_root, progress, "reference images"
        )
        pool, spatial, count = result.tensors["pool"], result.tensors["spatial"], len(result)
    return ref.side(pool, spatial), {
        "path": str(Path(path).resolve()),
        "feature_images": count,
        "statistics": "file" if ref.stats else "images",
        "recorded_extractor_sha1": ref.extractor_sha1,
    }


def evaluate_generator_suite(
    samples: str | Path,
    reference: str | Path,
    *,
    protocol: str | None = "imagenet256",
    num_images: int | None = None,
    size: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> SuiteEvaluation:
    """The suite for generated samples (an ``.npz`` with ``arr_0``, or a folder of images
    through the protocol's crop; without a protocol, a folder is read at ``size``)."""
    start = time.time()
    dev, proto, net, info = _setup(device, protocol)
    root = _cache(cache_dir, use_cache)
    side, ref_info = _reference_side(reference, net, info, proto, batch_size, root, progress)
    source = open_source(samples, proto, "all", size, num_images)
    if isinstance(source, NpzSource) and proto is not None:
        _check_size(source, proto)
    result = _features_pass(source, net, info, proto, batch_size, root, progress, "samples")
    fake = FeatureSet.from_tensors(result.tensors)
    try:
        metrics = suite_metrics(side, fake, **_suite_settings(proto), seed=seed)
    except ValueError as err:  # e.g. statistics of another width than these features
        raise EvaluationError(f"reference {reference}: {err}") from None
    meta = {
        "samples": str(samples),
        **_counts(result, len(source)),
        "reference": ref_info,
        "extractor": info,
        "device": str(dev),
        "seed": seed,
        "batch_size": batch_size,
        "wall_time_s": round(time.time() - start, 3),
    }
    return SuiteEvaluation("generator", _protocol_info(proto, None), [metrics], meta)


def _suite_settings(proto: Protocol | None) -> dict:
    if proto is None:
        return {}
    return {"is_splits": proto.is_splits, "pr_k": proto.pr_k, "pr_half": proto.pr_half}


def _tokenizer_compute(tok, net, ks, batch_size, seed, precision, num_steps):
    from tokenizers_vis import Tokens
    from tokenizers_vis.data.transforms import to_uint8
    from tokenizers_vis.metrics.reconstruction import reconstruction_metrics
    from tokenizers_vis.precision import autocast

    device = next(tok.parameters()).device

    @torch.no_grad()
    def compute(index: int, images: Tensor) -> dict[str, Tensor]:
        out = {f"original/{n}": t for n, t in batch_features(net, images).tensors().items()}
        x = images.float() / 127.5 - 1  # (b 3 s s) in [-1, 1], as data.transforms.to_tensor
        with autocast(device, precision):
            ids = tok.encode(x.to(device)).ids  # (b K g)
        for k in ks:
            # Seeded by the batch's first image: the same numbers however the run was split.
            gen = torch.Generator(device).manual_seed(seed + index * batch_size)
            with autocast(device, precision):
                recon = tok.decode(Tokens(ids[:, :k]), num_steps=num_steps, generator=gen)
            recon = recon.float().cpu()  # (b 3 s s)
            for n, t in batch_features(net, to_uint8(recon)).tensors().items():
                out[f"k{k}/{n}"] = t
            for n, t in reconstruction_metrics(recon, x).items():
                out[f"k{k}/{n}"] = t  # (b,)
        return out

    return compute


def evaluate_tokenizer_suite(
    model,
    data: str,
    *,
    protocol: str | None = "imagenet256",
    split: str = "test",
    num_images: int | None = None,
    ks: Sequence[int] | None = None,
    num_steps: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
    limits: Limits | None = None,
) -> SuiteEvaluation:
    """rFID, sFID, IS, precision / recall, KID, PSNR, SSIM, MS-SSIM per token count k, every
    image of ``data`` (through the protocol's crop) against its own reconstructions; ``limits``
    bound loading ``model`` (default `limits.DEFAULT_LIMITS`)."""
    from tokenizers_vis.evaluation.api import _model
    from tokenizers_vis.precision import resolve_precision

    start = time.time()
    dev, proto, net, info = _setup(device, protocol)
    tok, identity = _model(model, dev, limits)
    resolve_precision(precision, dev)
    if proto is not None and tok.image_size != proto.image_size:
        raise EvaluationError(
            f"protocol {proto.name} scores {proto.image_size} px images; the "
            f"tokenizer works at {tok.image_size} px"
        )
    ks = inputs.sweep_ks(ks, tok.max_tokens)
    source = open_source(data, proto, split, tok.image_size, num_images, seed)
    key = {
        "code": _code_digest(),
        "pass": "tokenizer",
        "source": source.identity(),
        "batch_size": batch_size,
        "protocol": _protocol_info(proto, tok.image_size),
        "extractor_sha1": info["sha1"],
        "model": _weights_digest(tok),
        "ks": ks,
        "seed": seed,
        "num_steps": num_steps,
        "precision": resolve_precision(precision, dev).name,
    }
    compute = _tokenizer_compute(tok, net, ks, batch_size, seed, precision, num_steps)
    result = stream_pass(
        source,
        batch_size,
        compute,
        BatchCache(_cache(cache_dir, use_cache), key),
        progress,
        "tokenizer",
    )
    rows = _tokenizer_rows(result.tensors, ks, tok, proto, seed)
    meta = {
        "model": identity,
        "data": str(data),
        "split": split,
        **_counts(result, len(source)),
        "extractor": info,
        "device": str(dev),
        "seed": seed,
        "batch_size": batch_size,
        "wall_time_s": round(time.time() - start, 3),
    }
    return SuiteEvaluation("tokenizer", _protocol_info(proto, tok.image_size), rows, meta)


def _tokenizer_rows(tensors: dict[str, Tensor], ks, tok, proto, seed) -> list[dict[str, Any]]:
    from tokenizers_vis.metrics import bits_per_token

    def part(prefix: str) -> FeatureSet:
        return FeatureSet.from_tensors(
            {n.split("/", 1)[1]: t for n, t in tensors.items() if n.startswith(prefix + "/")}
        )

    originals = part("original")
    side = ReferenceSide.from_features(originals)
    bits = bits_per_token(tok.vocab_sizes)
    rows = []
    for k in ks:
        metrics = suite_metrics(side, part(f"k{k}"), **_suite_settings(proto), seed=seed)
        row = {"k": k, "bytes_per_image": k * bits / 8, **metrics}
        for name in ("psnr", "ssim", "ms_ssim"):
            row[name] = tensors[f"k{k}/{name}"].double().mean().item()
        row["rfid"] = row.pop("fid")
        rows.append(row)
    if originals.logits is not None and len(originals) >= 10:
        from tokenizers_vis.metrics.inception_score import inception_score

        rows.append({"k": "original", "inception_score": inception_score(originals.logits)[0]})
    return rows


def _weights_digest(tok) -> str:
    import hashlib

    h = hashlib.sha1()
    for name, t in sorted(tok.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
