"""Inputs of `vistok eval`, checked before any long computation: every user mistake here raises
`UsageError` (one line on stderr, exit status 2, nothing written).

The images of a split are held in memory as uint8, ``num_images * 3 * size**2`` bytes (179 emoji
at 32 px: 0.5 MB; 50k ImageNet images at 256 px: 10 GB, so cap those with ``--num-images``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

CODEC_QUALITY_RANGE = {"jpeg": (1, 95), "webp": (0, 100)}
PERCEPTUAL_KINDS = ("inception", "lpips_vgg", "auto", "none")


class UsageError(Exception):
    """A user mistake: reported as one line on stderr with exit status 2."""


def int_list(text: str) -> list[int]:
    """argparse type: "1,2,4" -> [1, 2, 4]."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int_list(text)
    if len(value) != 1 or value[0] < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value[0]


def non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int_list(text)
    if len(value) != 1 or value[0] < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value[0]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:  # "Expected one of cpu, cuda, ... device type"
        raise UsageError(f"--device {name}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available here")
    return device


def sweep_ks(requested: list[int] | None, max_tokens: int) -> list[int]:
    """The token counts to evaluate: 1, 2, 4, ... and K itself, or the requested ones."""
    if not requested:
        from tokenizers_vis.tokenizer import prefix_lengths

        return prefix_lengths(max_tokens)
    bad = [k for k in requested if not 1 <= k <= max_tokens]
    if bad:
        raise UsageError(f"--ks: token counts must be in 1..{max_tokens} (K), got {bad}")
    return sorted(set(requested))


def codec_plan(codecs: str, qualities: list[int] | None) -> dict[str, list[int]]:
    """Codec name -> qualities to sweep (default: ``rate.DEFAULT_QUALITIES``)."""
    from tokenizers_vis.metrics.rate import DEFAULT_QUALITIES

    names = [c.strip().lower() for c in codecs.split(",") if c.strip() and c.strip() != "none"]
    plan = {}
    for name in names:
        if name not in CODEC_QUALITY_RANGE:
            raise UsageError(f"--codecs: unknown codec {name!r}; known: jpeg, webp, none")
        lo, hi = CODEC_QUALITY_RANGE[name]
        chosen = sorted(set(qualities)) if qualities else list(DEFAULT_QUALITIES[name])
        if any(not lo <= q <= hi for q in chosen):
            raise UsageError(f"--qualities: {name} qualities must be in {lo}..{hi}, got {chosen}")
        plan[name] = chosen
    return plan


def canonical_spec(text: str) -> str:
    """A data spec with its path made absolute (it is part of the reference-feature cache key)."""
    from tokenizers_vis.data.build import DATASETS, parse_spec

    name, _, path = text.partition(":")
    if name not in DATASETS and Path(text).is_dir():
        name, path = "folder", text  # a bare directory, as `vistok data` accepts
    if path and Path(path).exists():
        path = str(Path(path).resolve())
    spec = f"{name}:{path}" if path else name
    try:
        parse_spec(spec)
    except ValueError as err:
        raise UsageError(f"--data: {err}") from None
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
    except (ValueError, OSError) as err:  # unknown split, missing files, unreadable images
        raise UsageError(f"--data {spec} --split {split}: {err}") from None
    if len(images) < 2:
        raise UsageError(f"--data {spec} --split {split}: {len(images)} images; need at least 2")
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
        raise UsageError(f"Inception weights: {err}") from None
    return model, {"id": model.extractor_id, "weights": path, "sha1": sha1}


def load_perceptual(kind: str, inception: nn.Module | None) -> nn.Module | None:
    """The perceptual distance; the Inception one shares the FID extractor's weights."""
    from tokenizers_vis.losses.perceptual import LpipsVgg, PerceptualDistance, lpips_vgg_available

    if kind == "none":
        return None
    if kind == "lpips_vgg" or (kind == "auto" and lpips_vgg_available()):
        try:
            return LpipsVgg()
        except FileNotFoundError as err:
            raise UsageError(f"--perceptual lpips_vgg: {err}") from None
    return PerceptualDistance(extractor=inception)


def needs_inception(fid: bool, perceptual: str) -> bool:
    from tokenizers_vis.losses.perceptual import lpips_vgg_available

    inception_perceptual = perceptual == "inception" or (
        perceptual == "auto" and not lpips_vgg_available()
    )
    return fid or inception_perceptual


def load_model(name: str, device: torch.device):
    from safetensors import SafetensorError

    from tokenizers_vis import Tokenizer

    try:
        return Tokenizer.from_pretrained(name, map_location=device)
    except (ValueError, OSError, SafetensorError) as err:
        raise UsageError(f"--model {name}: {err}") from None


def output_dir(out: Path | None, *parts: str) -> Path:
    slug = "_".join(Path(p).name or p for p in parts).replace(":", "-")
    out = out if out is not None else Path("out") / "eval" / slug  # out/ is git-ignored
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    return out


def load_samples(path: Path) -> Tensor:
    """Generated samples as (n, 3, h, w) uint8: a folder of images or an .npz of one array."""
    from tokenizers_vis.data.folder import scan_images
    from tokenizers_vis.data.transforms import load_rgb

    try:
        if path.is_dir():
            arrays = [np.asarray(load_rgb(path / f)) for f in scan_images(path)]  # (h w 3) each
            if len({a.shape for a in arrays}) > 1:
                raise UsageError(f"--samples {path}: images differ in size")
            array = np.stack(arrays) if arrays else np.zeros((0, 0, 0, 3), np.uint8)
        elif path.is_file() and zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as npz:
                names = [n for n in ("samples", "images", "arr_0") if n in npz.files]
                if len(npz.files) != 1 and not names:
                    raise UsageError(
                        f"--samples {path}: several arrays ({npz.files}), none named samples"
                    )
                array = npz[names[0] if names else npz.files[0]]
        elif not path.exists():
            raise UsageError(f"--samples {path}: no such file or folder")
        else:
            raise UsageError(f"--samples {path}: not a folder of images or an .npz file")
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise UsageError(f"--samples {path}: cannot read: {err}") from None
    return _nchw_uint8(array, path)


def _nchw_uint8(array: np.ndarray, path: Path) -> Tensor:
    if array.dtype != np.uint8 or array.ndim != 4 or 3 not in (array.shape[1], array.shape[-1]):
        raise UsageError(
            f"--samples {path}: expected uint8 (n, h, w, 3) or (n, 3, h, w), "
            f"got {array.dtype} {array.shape}"
        )
    if array.shape[0] < 2:
        raise UsageError(f"--samples {path}: {array.shape[0]} images; FID needs at least 2")
    x = torch.from_numpy(np.ascontiguousarray(array))
    return x.permute(0, 3, 1, 2).contiguous() if array.shape[-1] == 3 else x  # (n 3 h w)


class CodecCache:
    """JPEG / WebP rows on disk, shared by every tokenizer evaluated on the same images.

    A codec row depends on the images, the codec and quality, the metrics and their settings;
    not on the tokenizer. On CPU the full default sweep (30 qualities) is ~80 % of a run, so
    evaluating another checkpoint on the same split reuses it. The key holds a digest of the
    image bytes (so a changed data set never hits), Pillow's codec library versions and a digest
    of the metric source files (so a fixed metric never serves stale numbers).

    Args:
        root: cache folder; None disables the cache.
        images: (n, 3, h, w) uint8, the evaluated images.
        context: the metric settings, e.g. extractor id, perceptual name, FID on / off, seed.
    """

    def __init__(self, root: Path | None, images: Tensor, context: dict) -> None:
        from PIL import __version__ as pillow
        from PIL import features

        self.root, self.hits = root, 0
        self.base = {
            **context,
            "images_sha1": hashlib.sha1(images.contiguous().numpy().tobytes()).hexdigest(),
            "shape": list(images.shape),
            "pillow": pillow,
            "libjpeg": features.version("jpg"),
            "libwebp": features.version("webp"),
            "code": _metrics_code_digest(),
        }

    def _entry(self, codec: str, quality: int) -> tuple[Path, str]:
        key = json.dumps({**self.base, "codec": codec, "quality": quality}, sort_keys=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:24]
        return self.root / f"{codec}-q{quality}-{name}.json", key

    def get(self, codec: str, quality: int) -> dict | None:
        """The cached row, or None (disabled, missing, unreadable or another key)."""
        if self.root is None:
            return None
        path, key = self._entry(codec, quality)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if stored.get("key") != key:
            return None
        self.hits += 1
        return stored["row"]

    def put(self, codec: str, quality: int, row: dict) -> None:
        if self.root is None:
            return
        from tools.eval_report import atomic_write

        path, key = self._entry(codec, quality)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({"key": key, "row": row}, allow_nan=True).encode())
        except OSError:  # a read-only cache only costs time
            pass


def _metrics_code_digest() -> str:
    import tokenizers_vis.data.transforms as transforms
    import tokenizers_vis.layers.inception as inception
    import tokenizers_vis.losses.perceptual as perceptual
    import tokenizers_vis.metrics.fid as fid
    import tokenizers_vis.metrics.rate as rate
    import tokenizers_vis.metrics.reconstruction as reconstruction

    h = hashlib.sha1()
    for module in (transforms, inception, perceptual, fid, rate, reconstruction):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]
