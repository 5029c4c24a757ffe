"""The page's callbacks: what each request of `vistok serve` computes, framework-free.

`Page` holds the served tokenizers, the images seen so far (in memory, by hash), the caches and
the job runner. Every method takes plain values parsed from a request and returns JSON-able
data (or a `Job` for long work); every user mistake is a `PageError` whose text the page shows.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from tokenizers_vis import codec
from tokenizers_vis.limits import Limits as InputLimits
from tokenizers_vis.serve.generate import Generator
from tokenizers_vis.serve.images import LRU, ImageEntry, PageError, example_images, read_image
from tokenizers_vis.serve.jobs import Job, JobRunner
from tokenizers_vis.serve.models import ModelSet, ServedModel
from tokenizers_vis.serve.views import (
    Encoded,
    Explorer,
    card,
    check_k,
    decode_key,
    layout_text,
    png_data_url,
    tokens_bytes,
)

__all__ = ["Limits", "Page", "ViewRequest"]

MAX_IDS_TILES = 16  # tiles whose ids the page lists
MAX_VTOK_TILES = 1024  # an uploaded .vtok may ask for more tiles than the page's own encodes
# Larger images, or more tiles, decode as jobs (a progress bar, a Cancel button).
LARGE_PIXELS = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 4096 * 4096
    max_tiles: int = 256  # tiles of an image at an explicit scale
    auto_tiles: int = 16  # tiles of the automatic scale: a slider that answers at once
    max_steps: int = 200


@dataclass(frozen=True)
class ViewRequest:
    """The page's settings for one image."""

    image: str
    model: str
    decoder: str = ""
    k: int = 1
    layout: str = "tile"
    scale: str = "auto"
    steps: int = 0  # 0: the decoder's default
    seed: int = 0


def powers_of_two(max_tokens: int) -> list[int]:
    """1, 2, 4, ..., and K itself."""
    ks = [2**i for i in range(int(math.log2(max_tokens)) + 1)]
    return ks if ks[-1] == max_tokens else [*ks, max_tokens]


class Page:
    """State and callbacks of one `vistok serve` process.

    Args:
        models: `--model` values besides the shipped tokenizers.
        gpt: the GPT of the generation tab.
        limits: request limits.
        input_limits: limits for loading the models (`tokenizers_vis.limits`; default its
            `DEFAULT_LIMITS`).
        workdir: the only folder the server writes to (default: a new temporary folder, removed
            by `close`).
    """

    def __init__(
        self,
        models: list[str] | tuple[str, ...] = (),
        gpt: str = "gpt_emoji",
        limits: Limits | None = None,
        workdir: str | Path | None = None,
        input_limits: InputLimits | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.models = ModelSet(models, limits=input_limits)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="vistok-serve-"))
        self.explorer = Explorer(self.limits.max_tiles, self.limits.auto_tiles)
        self.images: LRU[str, ImageEntry] = LRU(
            512 * 2**20, lambda e: e.image.width * e.image.height * 3
        )  # uploads live in memory only
        self.jobs = JobRunner()
        self.generator = Generator(gpt, self.workdir, input_limits)
        self._examples: dict[str, tuple[str, Image.Image]] | None = None

    def close(self) -> None:
        self.jobs.shutdown()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------------------ images
    def examples(self) -> dict[str, tuple[str, Image.Image]]:
        if self._examples is None:
            size = min(m.tokenizer.image_size for m in self.models.models.values())
            self._examples = {i: (label, im) for i, label, im in example_images(size)}
        return self._examples

    def info(self) -> dict[str, Any]:
        return {
            "models": self.models.describe(),
            "examples": [
                {"id": i, "label": label, "width": im.width, "height": im.height}
                for i, (label, im) in self.examples().items()
            ],
            "generation": self.generator.info,
            "limits": vars(self.limits),
            "layouts": list(codec.LAYOUTS),
        }

    def upload(self, data: bytes, name: str) -> dict[str, Any]:
        entry = self._keep(read_image(data, name, self.limits.max_pixels))
        return self._describe(entry)

    def example(self, example_id: str) -> dict[str, Any]:
        found = self.examples().get(example_id)
        if found is None:
            raise PageError(f"unknown example {example_id!r}")
        label, image = found
        entry = self._keep(ImageEntry(f"example-{example_id}", label, image))
        return self._describe(entry)

    def _keep(self, entry: ImageEntry) -> ImageEntry:
        return self.images.put(entry.key, entry)

    def _describe(self, entry: ImageEntry) -> dict[str, Any]:
        return {**entry.describe(), "src": png_data_url(entry.image)}

    def entry(self, key: str) -> ImageEntry:
        entry = self.images.get(key)
        if entry is None:
            raise PageError("unknown image (the server forgot it or restarted): load it again")
        return entry

    # ------------------------------------------------------------------------------ decoding
    def _settings(self, req: ViewRequest) -> tuple[ImageEntry, ServedModel, ServedModel, Encoded]:
        entry, model = self.entry(req.image), self.models.get(req.model)
        decoder = self.models.decoder(req.model, req.decoder)
        if not 0 <= req.steps <= self.limits.max_steps:
            raise PageError(f"steps must be in 1..{self.limits.max_steps} (0: the default)")
        enc = self.explorer.encode(entry, model, req.layout, req.scale)
        return entry, model, decoder, enc

    def _decode(self, req: ViewRequest, k: int, parts: tuple) -> dict[str, Any]:
        entry, model, decoder, enc = parts
        return self.explorer.decode(entry, enc, model, decoder, k, req.steps or None, req.seed)

    def _later(
        self, kind: str, decoder: ServedModel, size: tuple[int, int], fn, expected: float | None
    ) -> Job | None:
        """Long work becomes a job (progress, cancel): a sampling decoder, or (w, h, tiles)
        over `LARGE_PIXELS` or `auto_tiles`. None: run it now."""
        w, h, tiles = size
        quick = w * h <= LARGE_PIXELS and tiles <= self.limits.auto_tiles
        if quick and not decoder.generative:
            return None
        job = self.jobs.submit(kind, fn)
        job.expected_s = expected if decoder.generative else None
        return job

    def _expected(self, parts: tuple, steps: int) -> float:
        return self.explorer.estimate_seconds(parts[2], parts[3].header.num_tiles, steps)

    def view(self, req: ViewRequest) -> dict[str, Any] | Job:
        """Everything the page shows for k: decode, JPEG, WebP, ids, .vtok size."""
        parts = self._settings(req)
        entry, model, decoder, enc = parts
        check_k(req.k, enc.header.max_tokens)
        key = decode_key(entry, enc, model, decoder, req.k, req.steps or None, req.seed)
        if self.explorer.decodes.get(key) is None:
            job = self._later(
                "view", decoder, _size(parts), lambda job: self._view(req, parts),
                self._expected(parts, req.steps),
            )  # fmt: skip
            if job is not None:
                return job
        return self._view(req, parts)

    def _view(self, req: ViewRequest, parts: tuple) -> dict[str, Any]:
        start = time.perf_counter()
        entry, model, decoder, enc = parts
        decoded = self._decode(req, req.k, parts)
        nbytes = tokens_bytes(enc, req.k)
        vtok = self.explorer.vtok(enc, req.k)
        w, h = entry.image.size
        file = enc.at(req.k)
        shown = file.ids[:MAX_IDS_TILES].tolist()  # (t k g)
        return {
            "image": entry.key,
            "model": model.key,
            "decoder": decoder.key,
            "k": req.k,
            "max_tokens": enc.header.max_tokens,
            "bits_per_token": file.header.bits_per_token,
            "tiles": enc.header.num_tiles,
            "grid": list(enc.header.grid),
            "layout": enc.layout,
            "scale": enc.scale,
            "layout_text": layout_text(entry, enc),
            "original": card(entry.image, entry, w * h * 3, {"psnr": None, "ssim": None}),
            "decoded": card(
                decoded["image"], entry, nbytes, _scores(decoded), vtok_bytes=len(vtok)
            ),
            "jpeg": self.explorer.baseline(entry, "jpeg", nbytes),
            "webp": self.explorer.baseline(entry, "webp", nbytes),
            "ids": {"tiles": len(shown), "of": enc.header.num_tiles, "values": shown},
            "ms": round(1000 * (time.perf_counter() - start), 1),
        }

    def strip(self, req: ViewRequest) -> dict[str, Any] | Job:
        """Decodes at k = 1, 2, 4, ..., K."""
        parts = self._settings(req)
        enc, decoder = parts[3], parts[2]
        ks = powers_of_two(enc.header.max_tokens)

        def run(job: Job | None) -> dict[str, Any]:
            out = []
            for i, k in enumerate(ks):
                if job is not None:
                    job.progress(i / len(ks), f"decoding k = {k} ({i + 1} of {len(ks)})")
                d = self._decode(req, k, parts)
                nbytes = tokens_bytes(enc, k)
                out.append({"k": k, "bytes": nbytes, "src": png_data_url(d["image"], 128),
                            "psnr": d["psnr"], "ssim": d["ssim"]})  # fmt: skip
            return {"strip": out, "decoder": decoder.key}

        expected = len(ks) * self._expected(parts, req.steps)
        return self._later("strip", decoder, _size(parts), run, expected) or run(None)

    def vtok(self, req: ViewRequest) -> tuple[bytes, str]:
        """The .vtok file of the first k tokens and a file name for it."""
        entry, model, _, enc = self._settings(req)
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(entry.name).stem)
        return self.explorer.vtok(enc, req.k), f"{stem[:40] or 'image'}_{model.key}_k{req.k}.vtok"

    def decode_vtok(self, data: bytes, model_key: str, decoder_key: str, steps: int, seed: int):
        """An uploaded .vtok file decoded by a served tokenizer (the codec's checks and errors:
        not a .vtok file, truncated, corrupted, another tokenizer's ids, ...)."""
        model = self.models.get(model_key)
        decoder = self.models.decoder(model_key, decoder_key)
        if not data:
            raise PageError(".vtok file: empty (zero bytes)")
        try:
            file = model.codec.read(data)
        except ValueError as err:  # VtokError and its subclasses: one line each
            raise PageError(f".vtok file: {' '.join(str(err).split())}") from None
        h = file.header
        if h.size[0] * h.size[1] > self.limits.max_pixels or h.num_tiles > MAX_VTOK_TILES:
            raise PageError(
                f".vtok file: {h.size[0]}x{h.size[1]} in {h.num_tiles} tiles is more than this "
                f"page decodes ({self.limits.max_pixels:,} pixels, {MAX_VTOK_TILES} tiles)"
            )

        def run(job: Job | None) -> dict[str, Any]:
            with decoder.lock, torch.inference_mode():
                image = next(decoder.codec.decode_stream([(None, file)], steps or None, seed))[1]
            nbytes = sum(h.lengths) * h.bits_per_token / 8
            entry = ImageEntry("vtok", "vtok", image)
            return {"decoded": card(image, entry, nbytes, {}, vtok_bytes=len(data)),
                    "header": {"size": list(h.size), "tiles": h.num_tiles,
                               "lengths": sorted(set(h.lengths)), "max_tokens": h.max_tokens,
                               "coding": h.coding}, "decoder": decoder.key}  # fmt: skip

        expected = self.explorer.estimate_seconds(decoder, h.num_tiles, steps)
        return self._later("vtok", decoder, (*h.size, h.num_tiles), run, expected) or run(None)

    def generate(self, label: str, guidance: float, k: int, n: int, seed: int) -> Job:
        self.generator.check(label, k, n)
        if not math.isfinite(guidance) or not 0 <= guidance <= 20:
            raise PageError(f"guidance must be in 0..20, got {guidance}")
        return self.jobs.submit(
            "generate", lambda job: self.generator.run(job, label, guidance, k, n, seed)
        )


def _scores(decoded: dict[str, Any]) -> dict[str, Any]:
    return {"psnr": decoded["psnr"], "ssim": decoded["ssim"]}


def _size(parts: tuple) -> tuple[int, int, int]:
    entry, enc = parts[0], parts[3]
    return entry.image.width, entry.image.height, enc.header.num_tiles
