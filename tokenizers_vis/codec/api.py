"""`Codec`: images <-> .vtok bytes with one tokenizer, batched across images and tiles.

    codec = Codec.from_pretrained("emoji32")             # or a directory, device="cuda"
    data = codec.encode_image("photo.jpg", target_psnr=24)  # bytes of a .vtok file
    data = codec.encode_image("photo.jpg", target_bytes=4000)  # at most 4000 bytes
    image = codec.decode_bytes(data)                     # PIL RGB at the photo's own size
    for tag, data in codec.encode_stream((p, load_rgb(p)) for p in paths): ...

Streams keep memory flat: an image enters the pipeline only when the current batch of tiles
(`batch_size`, shared by consecutive images) has room, and results come out in input order as
soon as an image's last tile is done. Decoding pastes each batch of tiles into the image being
made (`layout.TileCanvas`), so a file of 100,000 tiles holds one batch besides its image.
Hostile files cost nothing: what a file may ask for (`tokenizers_vis.limits`: output pixels,
a coding group's memory) is checked from its header before any tile is decoded.

Works with every registered quantizer (ids (b, n, g)) and decoder (`num_steps` and a seeded
generator reach sampling decoders).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageOps
from torch import Tensor

from tokenizers_vis.codec import bitpack, budget, entropy_coding, static_table
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.batching import Job, batched
from tokenizers_vis.codec.entropy import (
    STATIC_CONFIG,
    EntropyModel,
    EntropyModelLoadError,
    load_entropy_model,
)
from tokenizers_vis.codec.errors import OptionsError
from tokenizers_vis.codec.identity import directory_identity, model_identity
from tokenizers_vis.codec.layout import LayoutName, TileCanvas, coded_size, tile_extents, to_tiles
from tokenizers_vis.codec.search import smallest_lengths
from tokenizers_vis.data.transforms import load_rgb, to_tensor, to_uint8
from tokenizers_vis.hub import PretrainedDir
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits, check_limit
from tokenizers_vis.precision import autocast, pick_device, resolve_precision
from tokenizers_vis.refine import refine_tokens
from tokenizers_vis.tokenizer import Tokenizer, Tokens

__all__ = ["Codec", "Encoded", "EncodeOptions"]

T = TypeVar("T")


@dataclass(frozen=True)
class EncodeOptions:
    """How to encode.

    Attributes:
        num_tokens: k per tile (default K); exclusive with the targets below.
        target_psnr: per tile, the smallest k meeting this PSNR in dB (see `codec.search`).
        target_bytes: a file of at most this many bytes, k per tile allocated where it buys
            most PSNR (see `codec.budget`).
        bpp: the same budget in bits per pixel of the image: floor(bpp * w * h / 8) bytes.
        k_grid: with a budget, the k values measured per tile (1 and K always added);
            None: 1, 2, 3, 4, 6, 8, 12, ... (powers of two and halfway points).
        layout: "tile" or "resize" (see `codec.layout`).
        scale: tile layout: resample the image by this factor first.
        refine_steps: encoder-side refinement steps (`refine_tokens`); 0 = one encoder pass.
        entropy_class: with a class-conditional entropy model, the class to code with (stored
            in the file); None: its unconditional prediction.
    """

    num_tokens: int | None = None
    target_psnr: float | None = None
    target_bytes: int | None = None
    bpp: float | None = None
    k_grid: tuple[int, ...] | None = None
    layout: LayoutName = "tile"
    scale: float = 1.0
    refine_steps: int = 0
    entropy_class: int | None = None

    @property
    def budgeted(self) -> bool:
        """True when a byte budget (`target_bytes` or `bpp`) sets the lengths."""
        return self.target_bytes is not None or self.bpp is not None

    def budget_bytes(self, size: tuple[int, int]) -> int | None:
        """The byte budget for an image of `size` (width, height), or None without one."""
        if self.bpp is not None:
            return int(self.bpp * size[0] * size[1] / 8)
        return self.target_bytes


@dataclass(frozen=True)
class Encoded:
    """One encoded image: the file's bytes, its header, whether every tile met the target
    PSNR (None without one), and `capped` when a byte budget exceeded what K tokens in every
    tile cost (every tile then has the k of its least error, `codec.budget`)."""

    data: bytes
    header: fmt.Header
    target_met: bool | None = None
    capped: bool = False


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
        precision: "fp32" (default), "auto" or "bf16" (`tokenizers_vis.precision`). A token
            file is an interchange format: in fp32 it decodes to the same pixels on every
            machine, while bf16 autocast (auto picks it on CPUs with native bf16) moves pixels
            by a level or two and can change ids, so it is opt-in, for speed.
        batch_size: tiles per encoder / decoder batch.
        entropy: an entropy model (`codec.entropy`): files are range coded with it (payload
            coding 1 or 2) and files it wrote decode; None writes bit-packed files.
        directory: the tokenizer's pretrained directory, where decoding finds its static table.
        limits: what one token file may make decoding spend (`tokenizers_vis.limits`; default
            `DEFAULT_LIMITS`); each decoding call may override them.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        identity: bytes | None = None,
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int = 64,
        entropy: EntropyModel | None = None,
        directory: str | os.PathLike | None = None,
        limits: Limits | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.device = pick_device(device)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.identity = identity if identity is not None else model_identity(tokenizer)
        self.precision, self.batch_size = precision, batch_size
        resolve_precision(precision, self.device)  # a bad name fails here, not mid-stream
        self.directory = None if directory is None else Path(directory)
        self._beside: EntropyModel | None = None  # the static table in `directory`, once read
        self.limits = limits or DEFAULT_LIMITS
        self.set_entropy(entropy)

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike | PretrainedDir,
        entropy: EntropyModel | str | os.PathLike | None = None,
        limits: Limits | None = None,
        **kwargs: Any,
    ) -> Codec:
        """A codec for a pretrained directory, a shipped model name or a `PretrainedDir`.

        The name is resolved and its files checked once; the tokenizer, its identity (hashed
        only after the weights loaded strictly) and its static table all come from that one
        directory.

        Args:
            entropy: an EntropyModel, a path `load_entropy_model` reads, or "static" for the
                table in the tokenizer's directory (`vistok entropy fit` writes it).
            limits: what the directory's files may ask for (`tokenizers_vis.limits`; default
                `DEFAULT_LIMITS`): config size and nesting, weights header, model size.
            **kwargs: as `Codec`.

        Raises:
            PretrainedError: the directory or a file in it is at fault (named).
            LimitError: a file or the spec asks for more than `limits` allows.
        """
        found = Tokenizer.open_pretrained(name_or_dir, limits)
        tokenizer = Tokenizer.from_pretrained(found, limits=limits)
        identity = directory_identity(found)
        if isinstance(entropy, str) and entropy == "static":
            entropy = static_table.load(found.path, limits)
        elif entropy is not None and not isinstance(entropy, EntropyModel):
            entropy = load_entropy_model(entropy, limits)
        return cls(
            tokenizer, identity, entropy=entropy, directory=found.path, limits=limits, **kwargs
        )

    def set_entropy(self, model: EntropyModel | None) -> None:
        """Range code what this codec writes with `model` (None: bit-packed files).

        Raises:
            OptionsError: the model codes other vocabularies, or was fitted on another tokenizer.
        """
        if model is not None:
            entropy_coding.check_compatible(model, tuple(self.tokenizer.vocab_sizes), 1)
            fitted_for = getattr(model, "tokenizer_id", None)
            if fitted_for is not None and fitted_for != self.identity:
                raise OptionsError(
                    f"the {model.describe()} was fitted on tokenizer {fitted_for.hex()}'s ids, "
                    f"this is {self.identity.hex()}"
                )
        self.entropy = model

    def entropy_models(self, coding: int) -> list[EntropyModel]:
        """The entropy models that may decode files of `coding`: the one given, and for
        static tables the one in the tokenizer's directory (read once, when first needed)."""
        models = [self.entropy] if self.entropy is not None else []
        if coding != fmt.CODING_STATIC or self.directory is None:
            return models
        if self._beside is None and (self.directory / STATIC_CONFIG).is_file():
            try:
                self._beside = static_table.load(self.directory)
            except EntropyModelLoadError as err:
                raise fmt.VtokError(f"the tokenizer's static table is unreadable: {err}") from None
        return models + ([self._beside] if self._beside is not None else [])

    # Encoding ---------------------------------------------------------------------------
    def check_options(self, options: EncodeOptions) -> None:
        """Raise OptionsError for options this tokenizer cannot honour."""
        k, max_tokens = options.num_tokens, self.tokenizer.max_tokens
        lengths = ("num_tokens", "target_psnr", "target_bytes", "bpp")
        given = [n for n in lengths if getattr(options, n) is not None]
        if len(given) > 1:
            raise OptionsError(
                f"give {' or '.join(given)}, not {'both' if len(given) == 2 else 'all'}"
            )
        if options.target_bytes is not None and options.target_bytes < 1:
            raise OptionsError(f"target bytes must be >= 1, got {options.target_bytes}")
        if options.bpp is not None and not options.bpp > 0:
            raise OptionsError(f"bits per pixel must be > 0, got {options.bpp}")
        budget.k_grid(max_tokens, options.k_grid)
        if k is not None and not 1 <= k <= max_tokens:
            raise OptionsError(f"tokens must be in 1..{max_tokens} for this model, got {k}")
        if options.refine_steps < 0:
            raise OptionsError(f"refine steps must be >= 0, got {options.refine_steps}")
        if self.entropy is not None:
            entropy_coding.check_compatible(self.entropy, self.tokenizer.vocab_sizes, k or 1)
            if k is None and self.entropy.max_tokens < max_tokens:
                raise OptionsError(
                    f"the {self.entropy.describe()} predicts at most {self.entropy.max_tokens} "
                    f"tokens: give num_tokens <= {self.entropy.max_tokens}"
                )
        c, classes = options.entropy_class, self.entropy.class_names if self.entropy else ()
        if c is not None and not 0 <= c < len(classes):
            raise OptionsError(
                f"entropy class {c}: the entropy model has classes 0..{len(classes) - 1}"
                if classes
                else "an entropy class needs a class-conditional entropy model"
            )
        coded_size((1, 1), self.tokenizer.image_size, options.layout, options.scale)

    def encode_stream(
        self, items: Iterable[tuple[T, Image.Image]], options: EncodeOptions | None = None
    ) -> Iterator[tuple[T, Encoded]]:
        """(tag, RGB image) pairs -> (tag, Encoded) pairs, in order, batched across images."""
        options = options or EncodeOptions()
        self.check_options(options)
        s = self.tokenizer.image_size

        def jobs() -> Iterator[Job]:
            for tag, image in items:
                canvas = coded_size(image.size, s, options.layout, options.scale)
                tiles = to_tiles(image, canvas, s)  # (T S S 3)
                yield Job(tag, tiles, (image.size, canvas, tile_extents(canvas, s)))

        def run(chunks: list[tuple[Job, slice]]) -> list[Any]:
            tiles = np.concatenate([job.tiles[part] for job, part in chunks])  # (b S S 3)
            extents = np.concatenate([job.extra[2][part] for job, part in chunks])  # (b 2)
            ids, lengths, met = self._encode_tiles(tiles, extents, options)
            out, start = [], 0
            for _, part in chunks:
                stop = start + part.stop - part.start
                out.append((ids[start:stop], lengths[start:stop], met[start:stop]))
                start = stop
            return out

        for job in batched(jobs(), run, self.batch_size):
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
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """(b S S 3) uint8 -> ids (b n g), lengths (b,), and per tile: target met (b,), or
        with a byte budget the `budget.TilePoints` the allocation needs."""
        b = tiles.shape[0]
        x = rearrange(
            to_tensor(rearrange(tiles, "b h w c -> (b h) w c")), "c (b h) w -> b c h w", b=b
        )
        x = x.to(self.device)  # (b 3 S S) in [-1, 1]
        k = options.num_tokens if options.target_psnr is None and not options.budgeted else None
        with autocast(self.device, self.precision):
            if options.refine_steps:
                tokens = refine_tokens(self.tokenizer, x, k, steps=options.refine_steps)
            else:
                tokens = self.tokenizer.encode(x, num_tokens=k)
        ids = tokens.ids  # (b k g)
        if options.budgeted:
            grid = budget.k_grid(self.tokenizer.max_tokens, options.k_grid)
            extents_t = torch.from_numpy(extents)
            points = budget.tile_points(
                self._decode_u8,
                ids,
                to_uint8(x),
                extents_t,
                grid,
                self.entropy,
                options.entropy_class,
            )
            return ids.cpu().numpy(), np.full(b, ids.shape[1]), points
        if options.target_psnr is None:
            lengths = torch.full((b,), ids.shape[1], dtype=torch.int64)
            met = torch.ones(b, dtype=torch.bool)
        else:
            target = to_uint8(x)  # (b 3 S S), the source tiles exactly
            lengths, met = smallest_lengths(
                self._decode_u8, ids, target, torch.from_numpy(extents), options.target_psnr
            )
        return ids.cpu().numpy(), lengths.numpy(), met.numpy()

    def _finish(self, job: Job, options: EncodeOptions) -> Encoded:
        size, canvas, _ = job.extra
        parts = job.results
        width = max(p[0].shape[1] for p in parts)
        ids = np.concatenate(
            [np.pad(p[0], ((0, 0), (0, width - p[0].shape[1]), (0, 0))) for p in parts]
        )
        lengths = np.concatenate([p[1] for p in parts])

        def write(lengths: np.ndarray) -> bytes:
            header = fmt.Header(
                tokenizer_id=self.identity,
                size=size,
                tile_size=self.tokenizer.image_size,
                max_tokens=self.tokenizer.max_tokens,
                vocab_sizes=self.tokenizer.vocab_sizes,
                lengths=tuple(int(k) for k in lengths),
                coded_size=canvas,
            )
            if self.entropy is None:
                return fmt.dumps(header, ids)
            return entropy_coding.dumps(
                header, ids, self.entropy, condition=options.entropy_class, limits=self.limits
            )

        allowed = options.budget_bytes(size)
        if allowed is not None:
            grid = budget.k_grid(self.tokenizer.max_tokens, options.k_grid)
            points = budget.TilePoints.concat([p[2] for p in parts])
            bits = sum(bitpack.bit_widths(self.tokenizer.vocab_sizes))
            what = f"a {size[0]}x{size[1]} image"
            fitted = budget.fit(write, points, grid, bits, allowed, what)
            return Encoded(fitted.data, fmt.read_header(fitted.data)[0], capped=fitted.capped)
        met = (
            None
            if options.target_psnr is None
            else bool(np.concatenate([p[2] for p in parts]).all())
        )
        data = write(lengths)
        return Encoded(data, fmt.read_header(data)[0], met)

    # Decoding ---------------------------------------------------------------------------
    def read(
        self,
        data: bytes | memoryview,
        limits: Limits | None = None,
        source: object = "token file",
        progress: Callable[[int], None] | None = None,
    ) -> fmt.TokenFile:
        """Parse a .vtok file for this codec's tokenizer (VtokError with the reason if not).

        Args:
            data: the file's bytes.
            limits: what decoding it may cost (default: the codec's): an image larger than
                `max_pixels` or a coding group larger than `max_work_bytes` is refused from the
                header, before any id is decoded.
            source: the file's name in a refusal.
            progress: entropy-coded files: called with the tiles of each group once decoded.

        Raises:
            VtokError: the file cannot be read or decoded (see the subclasses).
            LimitError: it asks for more than `limits` allow.
        """
        limits = limits or self.limits
        h, payload = fmt.read_payload(data, self.identity, limits, source)
        tok = self.tokenizer
        ours = (tok.image_size, tok.max_tokens, tuple(tok.vocab_sizes))
        if (h.tile_size, h.max_tokens, h.vocab_sizes) != ours:
            raise fmt.WrongTokenizerError(
                f"the header says tile {h.tile_size}, K {h.max_tokens}, vocab {h.vocab_sizes}; "
                f"this tokenizer has {ours[0]}, {ours[1]}, {ours[2]}"
            )
        models = self.entropy_models(h.coding) if h.coding != fmt.CODING_BITPACK else []
        ids = entropy_coding.decode_payload(h, payload, models, limits, source, progress)
        return fmt.TokenFile(h, ids)

    def decode_stream(
        self,
        items: Iterable[tuple[T, fmt.TokenFile]],
        num_steps: int | None = None,
        seed: int = 0,
        limits: Limits | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[T, Image.Image]]:
        """(tag, TokenFile from `read`) pairs -> (tag, RGB image at the original size).

        Tiles are decoded `batch_size` at a time and pasted into their image as they come, so
        memory is one batch plus the images in flight, whatever their number of tiles.
        A sampling decoder draws its noise from a generator seeded with `seed` for every batch,
        so an image decodes the same way whenever the batch it falls in is the same.

        Args:
            limits: an image larger than `max_pixels` is refused (LimitError) before its first
                tile is decoded (default: the codec's limits).
            progress: called with the number of tiles of each batch once decoded.
        """
        limits = limits or self.limits

        def run(chunks: list[tuple[Job, slice]]) -> list[None]:
            ids = [job.tiles[part] for job, part in chunks]  # (m n_j g) each
            lengths = np.concatenate([job.extra[0][part] for job, part in chunks])  # (b)
            width = max(i.shape[1] for i in ids)
            ids = np.concatenate(
                [np.pad(i, ((0, 0), (0, width - i.shape[1]), (0, 0))) for i in ids]
            )
            generator = torch.Generator(self.device).manual_seed(seed)
            recon = self._decode_u8(
                torch.from_numpy(ids), torch.from_numpy(lengths), num_steps, generator
            )
            tiles = rearrange(recon.cpu(), "b c h w -> b h w c").numpy()  # (b S S 3)
            start = 0
            for job, part in chunks:
                job.extra[1].paste(part.start, tiles[start : start + part.stop - part.start])
                start += part.stop - part.start
            if progress is not None:
                progress(len(tiles))
            return [None] * len(chunks)

        def jobs() -> Iterator[Job]:
            for tag, tf in items:
                h = tf.header
                pixels = max(h.size[0] * h.size[1], h.canvas_pixels)
                if pixels > limits.max_pixels:  # read() warned already; refuse only
                    check_limit("token file", "output pixels", pixels, limits, "max_pixels")
                canvas = TileCanvas(h.coded_size, h.tile_size)
                yield Job((tag, h), tf.ids, (np.asarray(h.lengths), canvas))

        for job in batched(jobs(), run, self.batch_size):
            tag, header = job.tag
            yield tag, job.extra[1].finish(header.size)

    def decode_bytes(
        self,
        data: bytes | memoryview,
        num_steps: int | None = None,
        seed: int = 0,
        limits: Limits | None = None,
    ) -> Image.Image:
        """.vtok bytes -> RGB image at the original size (`read`'s errors; `limits`: as
        `read`'s, default the codec's)."""
        token_file = self.read(data, limits)
        return next(self.decode_stream([(None, token_file)], num_steps, seed, limits))[1]

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
