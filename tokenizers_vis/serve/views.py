"""What the page shows for one image, tokenizer and k: callbacks over the codec and metrics.

Encoding happens once per (image, tokenizer, layout, scale): the codec writes the .vtok file at
k = K and the page keeps its ids; every prefix k is then a `TokenFile` with the first k ids of
every tile, decoded by `Codec.decode_stream` (the same call `vistok decode` makes) and written
by `codec.dumps` for the download, byte for byte what `vistok encode --num-tokens k` writes
(the encoder's ids at k are the first k of its ids at K). JPEG and WebP files are made at the
evaluation's qualities (`metrics.codec_roundtrip`, bisected and cached: `Explorer.baseline`) and
the one closest to the tokens' bytes is shown (`metrics.nearest_quality`). Tokens cost their
fixed length, `k * bits / 8` per tile (`metrics.token_bytes`), as in the evaluation reports.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from tokenizers_vis import codec
from tokenizers_vis.data import to_pil, to_tensor
from tokenizers_vis.metrics import codec_roundtrip, nearest_quality, psnr, ssim, token_bytes
from tokenizers_vis.metrics.rate import DEFAULT_QUALITIES
from tokenizers_vis.serve.images import LRU, ImageEntry, PageError
from tokenizers_vis.serve.models import ServedModel

__all__ = ["Encoded", "Explorer", "png_data_url"]

DISPLAY_SIDE = 512  # images are sent to the page at most this large (metrics use full size)
SSIM_MIN_SIDE = 11  # SSIM's Gaussian window (11 px) needs at least this much image


def png_data_url(image: Image.Image, max_side: int = DISPLAY_SIDE) -> str:
    """A PNG data URL of `image`, downscaled (Lanczos) to `max_side` if larger."""
    if max(image.size) > max_side:
        factor = max_side / max(image.size)
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # speed over size: this is a local page
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def scores(decoded: Image.Image, original: Image.Image) -> dict[str, float | None]:
    """PSNR (dB) and SSIM of a decoded image against the original, full size."""
    x, y = to_tensor(decoded)[None], to_tensor(original)[None]  # (1 3 h w)
    value = float(psnr(x, y)[0])
    out: dict[str, float | None] = {"psnr": value if math.isfinite(value) else None}
    out["ssim"] = float(ssim(x, y)[0]) if min(original.size) >= SSIM_MIN_SIDE else None
    return out


def layout_scale(
    size: tuple[int, int], tile: int, layout: str, scale: str, max_tiles: int, auto_tiles: int
) -> tuple[str, float]:
    """The (layout, scale) to code with: "auto" takes the largest of 1, 1/2, 1/4, ... whose
    tile grid has at most `auto_tiles` tiles (a slider that answers at once); an explicit
    scale may give up to `max_tiles` (decoded as a job), more is refused."""
    if layout not in codec.LAYOUTS:
        raise PageError(f"unknown layout {layout!r}; known: {', '.join(codec.LAYOUTS)}")
    if layout == "resize":
        return layout, 1.0
    auto = scale == "auto"
    candidates = [1.0 / 2**i for i in range(24)] if auto else [_scale(scale)]
    for s in candidates:
        w, h = codec.coded_size(size, tile, layout, s)
        tiles = -(-w // tile) * -(-h // tile)
        if tiles <= (auto_tiles if auto else max_tiles):
            return layout, s
        if not auto:
            raise PageError(
                f"scale {scale} gives {tiles} tiles of {tile} px; this page codes at most "
                f"{max_tiles} (vistok serve --max-tiles): pick a smaller scale or auto"
            )
    return layout, candidates[-1]


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PageError(f"scale must be 'auto' or a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise PageError(f"scale must be in (0, 1], got {text!r}")
    return value


@dataclass
class Encoded:
    """An image encoded at K by one tokenizer: the header and ids (T, K, g) of every tile."""

    header: codec.Header
    ids: np.ndarray
    layout: str
    scale: float

    def at(self, k: int) -> codec.TokenFile:
        """The file of the first k tokens of every tile."""
        lengths = (k,) * self.header.num_tiles
        return codec.TokenFile(dataclasses.replace(self.header, lengths=lengths), self.ids[:, :k])


class Explorer:
    """Encodes once, decodes per k, scores against the original and the JPEG / WebP files of
    closest size; every result is cached (LRU) by image hash and settings."""

    def __init__(self, max_tiles: int = 256, auto_tiles: int = 16, cache_mb: float = 256) -> None:
        self.max_tiles, self.auto_tiles = max_tiles, auto_tiles
        self.encoded: LRU[tuple, Encoded] = LRU(64)
        self.points: LRU[tuple, Any] = LRU(
            cache_mb * 2**20, lambda p: p.images.numel() * 4
        )  # JPEG / WebP files by (image, codec, quality)
        self.cards: LRU[tuple, dict[str, Any]] = LRU(
            cache_mb * 2**20, lambda c: len(c["src"])
        )  # and what the page shows of them
        self.decodes: LRU[tuple, dict[str, Any]] = LRU(
            cache_mb * 2**20, lambda d: d["image"].width * d["image"].height * 3
        )
        self.seconds_per_tile_step: dict[str, float] = {}

    # ---------------------------------------------------------------------------- encoding
    def encode(self, entry: ImageEntry, model: ServedModel, layout: str, scale: str) -> Encoded:
        tile = model.tokenizer.image_size
        layout, s = layout_scale(
            entry.image.size, tile, layout, scale, self.max_tiles, self.auto_tiles
        )
        key = (entry.key, model.key, layout, s)
        found = self.encoded.get(key)
        if found is not None:
            return found
        options = codec.EncodeOptions(layout=layout, scale=s)
        with model.lock, torch.inference_mode():
            data = next(model.codec.encode_images([entry.image], options)).data
            file = model.codec.read(data)
        return self.encoded.put(key, Encoded(file.header, file.ids, layout, s))

    def vtok(self, enc: Encoded, k: int) -> bytes:
        """The .vtok file of the first k tokens (bit-packed, as `vistok encode` writes)."""
        check_k(k, enc.header.max_tokens)
        file = enc.at(k)
        return codec.dumps(file.header, file.ids)

    # ---------------------------------------------------------------------------- decoding
    def decode(
        self,
        entry: ImageEntry,
        enc: Encoded,
        owner: ServedModel,
        decoder: ServedModel,
        k: int,
        steps: int | None,
        seed: int,
    ) -> dict[str, Any]:
        """The decode of the first k tokens with `decoder`, and its scores (cached)."""
        check_k(k, enc.header.max_tokens)
        key = decode_key(entry, enc, owner, decoder, k, steps, seed)
        found = self.decodes.get(key)
        if found is not None:
            return found
        sampling = key[-2:]
        start = time.perf_counter()
        with decoder.lock, torch.inference_mode():
            stream = decoder.codec.decode_stream([(None, enc.at(k))], sampling[0], sampling[1])
            image = next(stream)[1]
        seconds = time.perf_counter() - start
        if decoder.generative:
            work = enc.header.num_tiles * (steps or decoder.describe()["default_steps"] or 1)
            self.seconds_per_tile_step[decoder.key] = seconds / work
        return self.decodes.put(key, {"image": image, **scores(image, entry.image)})

    def estimate_seconds(self, decoder: ServedModel, tiles: int, steps: int | None) -> float:
        """Expected seconds of a sampling decode (from the last one), for the progress bar."""
        steps = steps or decoder.describe()["default_steps"] or 1
        return self.seconds_per_tile_step.get(decoder.key, 0.02) * tiles * steps

    # ---------------------------------------------------------------------------- baselines
    def point(self, entry: ImageEntry, name: str, quality: int) -> Any:
        """The image through JPEG or WebP at one quality (`metrics.codec_roundtrip`), cached."""
        key = (entry.key, name, quality)
        found = self.points.get(key)
        if found is None:
            found = self.points.put(
                key, codec_roundtrip(to_tensor(entry.image)[None], name, quality)
            )
        return found

    def baseline(self, entry: ImageEntry, name: str, target_bytes: float) -> dict[str, Any]:
        """The JPEG or WebP file of the image closest in bytes to `target_bytes`.

        The evaluation sweeps every quality of `DEFAULT_QUALITIES`; the page bisects the same
        list (file size grows with quality), so a large photo costs a few encodes per codec
        instead of fifteen, and `nearest_quality` picks among the files it made, which include
        the two that bracket the budget.
        """
        qualities = DEFAULT_QUALITIES[name]
        lo, hi, seen = 0, len(qualities) - 1, []
        while lo <= hi:
            mid = (lo + hi) // 2
            seen.append(self.point(entry, name, qualities[mid]))
            if seen[-1].mean_bytes < target_bytes:
                lo = mid + 1
            else:
                hi = mid - 1
        point = nearest_quality(seen, target_bytes)
        key = (entry.key, name, point.quality)
        found = self.cards.get(key)
        if found is None:
            decoded = to_pil(point.images[0])  # the decoded file, exactly
            nbytes = int(point.bytes_per_image[0])
            score = scores(decoded, entry.image)
            found = self.cards.put(key, card(decoded, entry, nbytes, score, quality=point.quality))
        return found


def decode_key(
    entry: ImageEntry,
    enc: Encoded,
    owner: ServedModel,
    decoder: ServedModel,
    k: int,
    steps: int | None,
    seed: int,
) -> tuple:
    """What a decode depends on (steps and seed only for a sampling decoder)."""
    sampling = (steps, seed) if decoder.generative else (None, 0)
    return (entry.key, owner.key, enc.layout, enc.scale, decoder.key, k, *sampling)


def check_k(k: int, max_tokens: int) -> None:
    if not 1 <= k <= max_tokens:
        raise PageError(f"k must be in 1..{max_tokens} for this tokenizer, got {k}")


def tokens_bytes(enc: Encoded, k: int) -> float:
    """Fixed-length bytes of the first k tokens of every tile: tiles * k * bits / 8."""
    return enc.header.num_tiles * float(token_bytes(k, enc.header.vocab_sizes))


def card(
    image: Image.Image, entry: ImageEntry, nbytes: float, score: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """One labelled image of the page: bytes, bits per pixel, PSNR, SSIM."""
    w, h = entry.image.size
    return {
        "src": png_data_url(image),
        "width": image.width,
        "height": image.height,
        "bytes": nbytes,
        "bpp": nbytes * 8 / (w * h),
        **score,
        **extra,
    }


def layout_text(entry: ImageEntry, enc: Encoded) -> str:
    """The tiling / resize rules as they apply to this image, in one sentence."""
    h = enc.header
    (w0, h0), (cw, ch), s = h.size, h.coded_size, h.tile_size
    cols, rows = h.grid
    if enc.layout == "resize":
        return (
            f"{w0}x{h0} image, resize layout: stretched to one {s}x{s} tile (Lanczos) and "
            f"stretched back on decode; one sequence whatever the size."
        )
    resampled = (cw, ch) != (w0, h0)
    scaled = f" resampled by {enc.scale:g} to {cw}x{ch} (Lanczos)," if resampled else ""
    pad = cols * s - cw, rows * s - ch
    padded = (
        f" the last column / row padded by {pad[0]} / {pad[1]} px of repeated edge,"
        if any(pad)
        else ""
    )
    back = " and resamples back to the original size" if resampled else ""
    return (
        f"{w0}x{h0} image, tile layout:{scaled} cut into {cols}x{rows} = {_tiles(cols * rows)} of "
        f"{s}x{s} px,{padded} each tile its own sequence; decoding puts the tiles back, crops "
        f"the padding{back}."
    )


def _tiles(n: int) -> str:
    return "1 tile" if n == 1 else f"{n} tiles"
