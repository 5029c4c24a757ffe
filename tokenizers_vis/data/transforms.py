"""Image decoding and the one uint8 <-> float [-1, 1] conversion of the library.

Every image that enters or leaves a model passes through `to_tensor` / `to_uint8` here, so the
mapping `u -> u / 127.5 - 1` and its inverse (round, clamp) is defined exactly once and a
uint8 -> float -> uint8 round trip is lossless.

`load_rgb` turns whatever a file holds (16-bit, palette with transparency, CMYK, RGBA/LA,
grayscale, EXIF-rotated) into 8-bit RGB, and raises `BadImageError` with a one-line reason
for anything it cannot decode, so callers can skip and count instead of crashing.

Huge images (decompression-bomb guard): an image with more than `max_pixels` pixels is
*skipped* (BadImageError "too large"), except JPEG, which libjpeg can decode at 1/2, 1/4 or
1/8 scale (`Image.draft`) without ever holding the full-size raster, so it is downscaled
safely instead. Pillow itself refuses headers above 2 x `Image.MAX_IMAGE_PIXELS` before any
pixel is read; those are skipped too.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from tokenizers_vis.errors import VistokError

__all__ = [
    "MAX_PIXELS",
    "BadImageError",
    "BadImageWarning",
    "WorkerGenerator",
    "center_crop_resize",
    "load_rgb",
    "mix_seed",
    "random_crop_flip",
    "resize_square",
    "to_pil",
    "to_tensor",
    "to_uint8",
]

# Pillow's own warning threshold (~89.5 MP, a 9459 x 9459 image); decoding one such RGB image
# already needs ~270 MB, which is the most a data-loader worker should spend on one sample.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class BadImageError(VistokError):
    """An image file that cannot be turned into RGB; `str(err)` is a one-line reason."""


class BadImageWarning(UserWarning):
    """Bad images were skipped (the message counts them)."""


def _open(src: str | os.PathLike | bytes) -> Image.Image:
    if isinstance(src, bytes | bytearray | memoryview):
        if len(src) == 0:
            raise BadImageError("empty (zero bytes)")
        fp: io.BytesIO | Path = io.BytesIO(bytes(src))
    else:
        fp = Path(src)
        if not fp.is_file():
            raise BadImageError(f"not a file: {fp}")
        if fp.stat().st_size == 0:
            raise BadImageError("empty (zero bytes)")
    try:
        # The warning between 1x and 2x the Pillow limit is handled by our own max_pixels check.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Image.DecompressionBombError as err:
        raise BadImageError(f"too large (decompression-bomb guard): {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImageError(f"unreadable: {err}") from None


def _fit_pixels(im: Image.Image, max_pixels: int) -> Image.Image:
    w, h = im.size
    if w * h <= max_pixels:
        return im
    if im.format == "JPEG":
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale without materialising the full raster;
        # take the mildest scale that fits (draft() rounds a requested size up to a scale).
        for d in (2, 4, 8):
            if math.ceil(w / d) * math.ceil(h / d) <= max_pixels:
                im.draft(im.mode, (math.ceil(w / d), math.ceil(h / d)))
                if im.size[0] * im.size[1] <= max_pixels:
                    return im
    raise BadImageError(f"too large: {w}x{h} = {w * h} pixels > max_pixels={max_pixels}")


def _to_8bit_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)  # 16-bit range 0..65535 for every mode here
        return Image.fromarray(np.round(np.clip(a, 0, 65535) / 257.0).astype(np.uint8)).convert(
            "RGB"
        )
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else 1.0  # float TIFFs are 0..1
        a = np.nan_to_num(a * scale, nan=0.0)
        return Image.fromarray(np.round(np.clip(a, 0, 255)).astype(np.uint8)).convert("RGB")
    # "transparency" is a palette index (P) or a colour key (L, RGB PNGs): both mean alpha.
    if "transparency" in im.info or im.mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK (Pillow undoes Adobe inversion), YCbCr, RGB


def load_rgb(src: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file (or its bytes) into an 8-bit RGB PIL image.

    Transparent images are composited on white; 16-bit images are scaled to 8 bits; EXIF
    orientation is applied; animated images give their first frame.

    Args:
        src: a path, or the encoded bytes of an image file.
        max_pixels: larger images are skipped, except JPEGs, which are decoded downscaled
            (see the module docstring).

    Returns:
        A fully decoded PIL image in mode "RGB".

    Raises:
        BadImageError: zero-byte, missing, unreadable, truncated, unsupported or too large.
    """
    im = _open(src)
    try:
        im = _fit_pixels(im, max_pixels)
        im.load()
        return _to_8bit_rgb(ImageOps.exif_transpose(im) or im)  # always a new image
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadImageError(f"unreadable or truncated: {err}") from None
    finally:
        im.close()  # release the file now, also when decoding failed


def to_tensor(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """8-bit RGB image -> float tensor in [-1, 1].

    Args:
        image: a PIL image (converted to RGB), or uint8 (h, w, 3) numpy array / tensor.

    Returns:
        (3, h, w) float32 tensor, `u / 127.5 - 1`.
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected uint8 (h, w, 3), got {image.shape} {image.dtype}")
    # astype copies, so read-only arrays (PIL, np.load) give a writable tensor.
    x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32))  # (3 h w)
    return x.div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8, rounding to nearest and clamping.

    Args:
        x: (b, 3, h, w) or (3, h, w) float tensor in [-1, 1].

    Returns:
        uint8 tensor of the same shape (channels first).
    """
    return ((x.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> float32 in [0, 1] (no rounding, no clamp: differentiable)."""
    return (x.float() + 1.0) / 2.0


def to_pixel_scale(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> float32 in [0, 255] without rounding (differentiable): the
    input scale of the TF-Inception graph, for losses that need gradients through it."""
    return (x.float() + 1.0) * 127.5


def to_pil(x: torch.Tensor) -> Image.Image:
    """One image -> PIL RGB.

    Args:
        x: (3, h, w) tensor, float in [-1, 1] or uint8.

    Returns:
        PIL image of size (w, h).
    """
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected (3, h, w), got {tuple(x.shape)}")
    u = x if x.dtype == torch.uint8 else to_uint8(x)
    return Image.fromarray(u.permute(1, 2, 0).cpu().numpy())  # (h w 3)


def resize_square(
    im: Image.Image, size: int, fill: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Pad to a centred square with `fill`, then resize to (size, size) with Lanczos."""
    w, h = im.size
    side = max(w, h)
    if w != h:
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(im, ((side - w) // 2, (side - h) // 2))
        im = canvas
    return im if side == size else im.resize((size, size), Image.Resampling.LANCZOS)


def center_crop_resize(im: Image.Image, size: int) -> Image.Image:
    """Largest centred square crop, resized to (size, size) with Lanczos (eval transform)."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return im.resize(
        (size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side)
    )


def random_crop_flip(
    x: torch.Tensor,
    generator: torch.Generator,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    flip: bool = True,
) -> torch.Tensor:
    """Training augmentation: random square crop resized back, and horizontal flip.

    The crop keeps a side fraction drawn from `sqrt(crop_scale)` (an area fraction), so small
    images are not blurred beyond what the tokenizer will see at test time.

    Args:
        x: (3, s, s) float image in [-1, 1].
        generator: the only randomness source.
        crop_scale: area fraction range of the crop; (1, 1) disables cropping.
        flip: flip left-right with probability 1/2.

    Returns:
        (3, s, s) float image in [-1, 1].
    """
    _, h, w = x.shape
    lo, hi = crop_scale
    area = lo + (hi - lo) * torch.rand((), generator=generator).item()
    side = max(1, min(h, w, round(math.sqrt(area) * min(h, w))))
    if side < min(h, w):
        top = int(torch.randint(0, h - side + 1, (), generator=generator))
        left = int(torch.randint(0, w - side + 1, (), generator=generator))
        crop = x[None, :, top : top + side, left : left + side]  # (1 3 side side)
        x = torch.nn.functional.interpolate(
            crop, size=(h, w), mode="bicubic", align_corners=False, antialias=True
        )[0].clamp_(-1.0, 1.0)  # (3 h w)
    if flip and torch.rand((), generator=generator).item() < 0.5:
        x = x.flip(-1)
    return x


def mix_seed(*parts: int | str) -> int:
    """A well-mixed 63-bit seed from any ints / strings (stable across runs and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class WorkerGenerator:
    """One `torch.Generator` per data-loader worker, for training-time randomness.

    Seeded from `seed` and the worker's `torch.utils.data.get_worker_info().seed`, which the
    DataLoader redraws every epoch (from the seed Lightning's `seed_everything` sets), so
    augmentations differ across workers and epochs yet a seeded run repeats exactly. In the
    main process (num_workers=0) one generator seeded from `seed` runs on across epochs.
    """

    def __init__(self, seed: int):
        self.seed = seed
        self._owner: tuple[int, int | None] | None = None
        self._gen: torch.Generator | None = None

    def __call__(self) -> torch.Generator:
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), None if info is None else info.seed)
        if self._gen is None or owner != self._owner:
            self._gen = torch.Generator().manual_seed(mix_seed(self.seed, owner[1] or 0))
            self._owner = owner
        return self._gen

    def get_state(self) -> torch.Tensor | None:
        """The main-process generator's state (None before its first draw, or in a worker)."""
        if self._gen is None or self._owner != (os.getpid(), None):
            return None
        return self._gen.get_state()

    def set_state(self, state: torch.Tensor | None) -> None:
        """Continue the main-process stream from `get_state()` (a resumed run; None: no-op)."""
        if state is None:
            return
        self._owner = (os.getpid(), None)
        self._gen = torch.Generator()
        self._gen.set_state(state)

    def __getstate__(self) -> dict:
        return {"seed": self.seed, "_owner": None, "_gen": None}
