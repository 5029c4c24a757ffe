"""`Codec`: images <-> .vtok bytes with one tokenizer, batched across images and tiles.

    codec = Codec.from_pretrained("emoji32")             # or a directory, device="cuda"
    data = codec.encode_image("photo.jpg", target_psnr=24)  # bytes of a .vtok file
    image = codec.decode_bytes(data)                     # PIL RGB at the photo's own size
    for tag, data in codec.encode_stream((p, load_rgb(p)) for p in paths): ...

Streams keep memory flat: an image enters the pipeline only when the current batch of tiles
(`batch_size`, shared by consecutive images) has room, and results come out in input order as
soon as an image's last tile is done. Works with every registered quantizer (ids (b, n, g)) and
decoder (`num_steps` and a seeded generator reach sampling decoders).
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageOps
from torch import Tensor

from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.identity import directory_identity, model_identity
from tokenizers_vis.codec.layout import (
    LayoutName,
    coded_size,
    tile_extents,
    tiles_to_image,
    to_tiles,
)
from tokenizers_vis.codec.search import smallest_lengths
from tokenizers_vis.data.transforms import load_rgb, to_tensor, to_uint8
from tokenizers_vis.precision import autocast, pick_device, resolve_precision
from tokenizers_vis.refine import refine_tokens
from tokenizers_vis.tokenizer import Tokenizer, Tokens

__all__ = ["Codec", "Encoded", "EncodeOptions"]

T = TypeVar("T")


@dataclass(frozen=True)
class EncodeOptions:
    """How to encode.

    Attributes:
        num_tokens: k per tile (default K); exclusive with `target_psnr`.
        target_psnr: per tile, the smallest k meeting this PSNR in dB (see `codec.search`).
        layout: "tile" or "resize" (see `codec.layout`).
        scale: tile layout: resample the image by this factor first.
        refine_steps: encoder-side refinement steps (`refine_tokens`); 0 = one encoder pass.
    """

    num_tokens: int | None = None
    target_psnr: float | None = None
    layout: LayoutName = "tile"
    scale: float = 1.0
    refine_steps: int = 0


@dataclass(frozen=True)
class Encoded:
    """One encoded image: the file's bytes, its header, and whether every tile met the target
    (None without a target)."""

    data: bytes
    header: fmt.Header
    target_met: bool | None = None


@dataclass
class _Job:
    """One image or file in flight: its tiles, and what the batches computed for them."""

    tag: Any
    tiles: np.ndarray  # (T S S 3) uint8 for encoding; (T n g) ids for decoding
    extra: Any
    done: int = 0
    results: list[Any] = field(default_factory=list)


def _batched(
    jobs: Iterable[_Job], run: Callable[[list[tuple[_Job, slice]]], list[Any]], batch_size: int
) -> Iterator[_Job]:
    """Feed consecutive jobs' tiles through `run` in batches; yield each finished job in order.

    A job is pulled from `jobs` only while the next batch has room, so at most one batch of
    tiles (plus the job being read) is in memory.
    """
    pending: deque[_Job] = deque()
    queued = 0  # tiles of pending jobs not yet run

    def flush(final: bool) -> Iterator[_Job]:
        nonlocal queued
        while queued >= batch_size or (final and queued):
            chunks, room = [], batch_size
            for job in pending:
                take = min(len(job.tiles) - job.done, room)
                if take:
                    chunks.append((job, slice(job.done, job.done + take)))
                    room -= take
                if not room:
                    break
            for (job, part), result in zip(chunks, run(chunks), strict=True):
                job.results.append(result)
                job.done = part.stop
            queued -= batch_size - room
            while pending and pending[0].done == len(pending[0].tiles):
                yield pending.popleft()

    for job in jobs:
        pending.append(job)
        queued += len(job.tiles)
        yield from flush(final=False)
    yield from flush(final=True)


def _as_rgb(image: Image.Image | str | os.PathLike | bytes) -> Image.Image:
    """RGB with the library's conversions (alpha on white, 16-bit, palette, CMYK, EXIF)."""
    if isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image) or image  # as `load_rgb` does for files
        if image.mode == "RGB":
            return image
        # `load_rgb` is the one conversion path; PNG keeps alpha, palettes and 16 bits, TIFF
        # the modes PNG cannot hold (CMYK, float).
        buf = io.BytesIO()
        try:
            image.save(buf, format="PNG")
        except (OSError, KeyError, ValueError):
            buf = io.BytesIO()
            image.save(buf, format="TIFF")
        return load_rgb(buf.getvalue())
    return load_rgb(image)


class Codec:
    """Encode images to .vtok bytes and decode them, with one tokenizer.

    Args:
        tokenizer: any Tokenizer (put in eval mode; moved to `device`).
        identity: its 8-byte identity; default `model_identity(tokenizer)` (use
            `from_pretrained` to get the identity of a pretrained directory).
        device: "auto", "cpu", "cuda" or "cuda:N".
        precision: "auto", "bf16" or "fp32" (`tokenizers_vis.precision`; auto: fp32 on CPUs
            without native bf16).
        batch_size: tiles per encoder / decoder batch.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        identity: bytes | None = None,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.device = pick_device(device)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.identity = identity if identity is not None else model_identity(tokenizer)
        self.precision, self.batch_size = precision, batch_size
        resolve_precision(precision, self.device)  # a bad name fails here, not mid-stream

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, **kwargs: Any) -> Codec:
        """A codec for a pretrained directory or shipped model name (kwargs as `Codec`)."""
        identity = directory_identity(name_or_dir)
        return cls(Tokenizer.from_pretrained(name_or_dir), identity, **kwargs)

    # Encoding ---------------------------------------------------------------------------
    def check_options(self, options: EncodeOptions) -> None:
        """Raise ValueError for options this tokenizer cannot honour."""
        k, max_tokens = options.num_tokens, self.tokenizer.max_tokens
        if k is not None and options.target_psnr is not None:
            raise ValueError("give num_tokens or target_psnr, not both")
        if k is not None and not 1 <= k <= max_tokens:
            raise ValueError(f"tokens must be in 1..{max_tokens} for this model, got {k}")
        if options.refine_steps < 0:
            raise ValueError(f"refine steps must be >= 0, got {options.refine_steps}")
        coded_size((1, 1), self.tokenizer.image_size, options.layout, options.scale)

    def encode_stream(
        self, items: Iterable[tuple[T, Image.Image]], options: EncodeOptions | None = None
    ) -> Iterator[tuple[T, Encoded]]:
        """(tag, RGB image) pairs -> (tag, Encoded) pairs, in order, batched across images."""
        options = options or EncodeOptions()
        self.check_options(options)
        s = self.tokenizer.image_size

        def jobs() -> Iterator[_Job]:
            for tag, image in items:
                canvas = coded_size(image.size, s, options.layout, options.scale)
                tiles = to_tiles(image, canvas, s)  # (T S S 3)
                yield _Job(tag, tiles, (image.size, canvas, tile_extents(canvas, s)))

        def run(chunks: list[tuple[_Job, slice]]) -> list[Any]:
            tiles = np.concatenate([job.tiles[part] for job, part in chunks])  # (b S S 3)
            extents = np.concatenate([job.extra[2][part] for job, part in chunks])  # (b 2)
            ids, lengths, met = self._encode_tiles(tiles, extents, options)
            out, start = [], 0
            for _, part in chunks:
                stop = start + part.stop - part.start
                out.append((ids[start:stop], lengths[start:stop], met[start:stop]))
                start = stop
            return out

        for job in _batched(jobs(), run, self.batch_size):
            yield job.tag, self._finish(job, options)

    def encode_images(
        self, images: Iterable[Image.Image], options: EncodeOptions | None = None
    ) -> Iterator[Encoded]:
        """RGB images -> Encoded, in order."""
        for _, encoded in self.encode_stream(((None, im) for im in images), options):
            yield encoded

    def encode_image(self, image: Image.Image | str | os.PathLike | bytes, **options: Any) -> bytes:
        """One image (a PIL image of any mode, a path, or a file's bytes) -> .vtok bytes.

        Keyword arguments are `EncodeOptions` fields. Raises BadImageError for bad files.
        """
        return next(self.encode_images([_as_rgb(image)], EncodeOptions(**options))).data

    def _encode_tiles(
        self, tiles: np.ndarray, extents: np.ndarray, options: EncodeOptions
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(b S S 3) uint8 -> ids (b n g), lengths (b,), target met (b,)."""
        b = tiles.shape[0]
        x = rearrange(
            to_tensor(rearrange(tiles, "b h w c -> (b h) w c")), "c (b h) w -> b c h w", b=b
        )
        x = x.to(self.device)  # (b 3 S S) in [-1, 1]
        k = options.num_tokens if options.target_psnr is None else None
        with autocast(self.device, self.precision):
            if options.refine_steps:
                tokens = refine_tokens(self.tokenizer, x, k, steps=options.refine_steps)
            else:
                tokens = self.tokenizer.encode(x, num_tokens=k)
        ids = tokens.ids  # (b k g)
        if options.target_psnr is None:
            lengths = torch.full((b,), ids.shape[1], dtype=torch.int64)
            met = torch.ones(b, dtype=torch.bool)
        else:
            target = to_uint8(x)  # (b 3 S S), the source tiles exactly
            lengths, met = smallest_lengths(
                self._decode_u8, ids, target, torch.from_numpy(extents), options.target_psnr
            )
        return ids.cpu().numpy(), lengths.numpy(), met.numpy()

    def _finish(self, job: _Job, options: EncodeOptions) -> Encoded:
        size, canvas, _ = job.extra
        parts = job.results
        width = max(p[0].shape[1] for p in parts)
        ids = np.concatenate(
            [np.pad(p[0], ((0, 0), (0, width - p[0].shape[1]), (0, 0))) for p in parts]
        )
        lengths = np.concatenate([p[1] for p in parts])
        header = fmt.Header(
            tokenizer_id=self.identity,
            size=size,
            tile_size=self.tokenizer.image_size,
            max_tokens=self.tokenizer.max_tokens,
            vocab_sizes=self.tokenizer.vocab_sizes,
            lengths=tuple(int(k) for k in lengths),
            coded_size=canvas,
        )
        met = (
            None
            if options.target_psnr is None
            else bool(np.concatenate([p[2] for p in parts]).all())
        )
        return Encoded(fmt.dumps(header, ids), header, met)

    # Decoding ---------------------------------------------------------------------------
    def read(self, data: bytes | memoryview) -> fmt.TokenFile:
        """Parse a .vtok file for this codec's tokenizer (VtokError with the reason if not)."""
        token_file = fmt.loads(data, tokenizer_id=self.identity)
        h, tok = token_file.header, self.tokenizer
        ours = (tok.image_size, tok.max_tokens, tuple(tok.vocab_sizes))
        if (h.tile_size, h.max_tokens, h.vocab_sizes) != ours:
            raise fmt.WrongTokenizerError(
                f"the header says tile {h.tile_size}, K {h.max_tokens}, vocab {h.vocab_sizes}; "
                f"this tokenizer has {ours[0]}, {ours[1]}, {ours[2]}"
            )
        return token_file

    def decode_stream(
        self,
        items: Iterable[tuple[T, fmt.TokenFile]],
        num_steps: int | None = None,
        seed: int = 0,
    ) -> Iterator[tuple[T, Image.Image]]:
        """(tag, TokenFile from `read`) pairs -> (tag, RGB image at the original size).

        A sampling decoder draws its noise from a generator seeded with `seed` for every batch,
        so an image decodes the same way whenever the batch it falls in is the same.
        """

        def run(chunks: list[tuple[_Job, slice]]) -> list[np.ndarray]:
            ids = [job.tiles[part] for job, part in chunks]  # (m n_j g) each
            lengths = np.concatenate([job.extra[part] for job, part in chunks])  # (b)
            width = max(i.shape[1] for i in ids)
            ids = np.concatenate(
                [np.pad(i, ((0, 0), (0, width - i.shape[1]), (0, 0))) for i in ids]
            )
            generator = torch.Generator(self.device).manual_seed(seed)
            recon = self._decode_u8(
                torch.from_numpy(ids), torch.from_numpy(lengths), num_steps, generator
            )
            tiles = rearrange(recon.cpu(), "b c h w -> b h w c").numpy()  # (b S S 3)
            out, start = [], 0
            for _, part in chunks:
                out.append(tiles[start : start + part.stop - part.start])
                start += part.stop - part.start
            return out

        jobs = (_Job((tag, tf.header), tf.ids, np.asarray(tf.header.lengths)) for tag, tf in items)
        for job in _batched(jobs, run, self.batch_size):
            tag, header = job.tag
            tiles = np.concatenate(job.results)  # (T S S 3)
            yield tag, tiles_to_image(tiles, header.coded_size, header.size)

    def decode_bytes(
        self, data: bytes | memoryview, num_steps: int | None = None, seed: int = 0
    ) -> Image.Image:
        """.vtok bytes -> RGB image at the original size."""
        return next(self.decode_stream([(None, self.read(data))], num_steps, seed))[1]

    def _decode_u8(
        self,
        ids: Tensor,
        lengths: Tensor,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """ids (b n g), lengths (b,) -> (b 3 S S) uint8 reconstructions."""
        n = int(lengths.max())
        tokens = Tokens(ids[:, :n].to(self.device), lengths.to(self.device))
        with autocast(self.device, self.precision):
            recon = self.tokenizer.decode(tokens, num_steps=num_steps, generator=generator)
        return to_uint8(recon)  # (b 3 S S)
