"""Encode and decode image files in bulk: what `vistok encode` / `vistok decode` run (over the
library's `tokenizers_vis.codec.Codec`, which knows nothing of folders or output names).

Every input ends up either written or in `Summary.failures` with its reason; nothing is
overwritten unless asked for; outputs are written atomically (`tokenizers_vis.atomic`). Inputs are
streamed: an image is read only when the encoder's batch has room for its tiles, so memory stays
flat over any number of files. A `.vtoks` output collects every result in one container.
"""

from __future__ import annotations

import io
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from tokenizers_vis.atomic import OutputExistsError, write_atomic
from tokenizers_vis.cli.batch.paths import (
    Job,
    image_extensions,
    image_failure_reason,
    plan,
    read_regular,
    safe_name,
)
from tokenizers_vis.codec.api import Codec, Encoded, EncodeOptions
from tokenizers_vis.codec.container import Container, RecordError, RecordNameError, is_container
from tokenizers_vis.codec.deblock import deblock as blend
from tokenizers_vis.codec.format import CODING_BITPACK, VtokError, read_header
from tokenizers_vis.codec.record_names import describe, name_problem
from tokenizers_vis.data.transforms import MAX_PIXELS, BadImageError, load_rgb
from tokenizers_vis.errors import UsageError
from tokenizers_vis.limits import LimitError, LimitWarning

__all__ = ["FORMATS", "Failure", "Summary", "decode_files", "encode_files"]

FORMATS = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
_EXISTS = "output exists (--overwrite replaces it)"


@dataclass(frozen=True)
class Failure:
    """An input that produced no output, and why."""

    path: str
    reason: str


@dataclass
class Summary:
    """What a bulk run did. `ok` is True when no input failed."""

    action: str
    done: int = 0
    failures: list[Failure] = field(default_factory=list)
    ignored: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    tokens: int = 0
    target_missed: int = 0
    capped: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        """The one-line summary: files, bytes in and out, bits per pixel, time."""
        total = self.done + len(self.failures)
        failed = f" ({len(self.failures)} failed)" if self.failures else ""
        coded = self.bytes_out if self.action == "encoded" else self.bytes_in
        bpp = 8 * coded / self.pixels if self.pixels else 0.0
        rate = self.done / self.seconds if self.seconds else 0.0
        text = (
            f"{self.action} {self.done} of {total} files{failed}: {_size(self.bytes_in)} in, "
            f"{_size(self.bytes_out)} out, {bpp:.3f} bits/pixel, {self.seconds:.1f} s "
            f"({rate:.2f} files/s)"
        )
        if self.ignored:
            text += f"; {self.ignored} other files in folders ignored"
        if self.target_missed:
            text += f"; {self.target_missed} files missed the PSNR target in some tile"
        if self.capped:
            text += f"; {self.capped} files needed less than their byte budget (K tokens fit)"
        return text


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# A file of this many tiles gets a progress bar of its tiles (decoding them takes seconds).
LONG_FILE_TILES = 2048


class _Run:
    """One bulk run's bookkeeping: the summary, the progress bars and the overwrite policy."""

    def __init__(self, summary: Summary, total: int, progress: bool, overwrite: bool) -> None:
        self.summary, self.overwrite, self.progress = summary, overwrite, progress
        self.bar = tqdm(total=total, desc=summary.action[:-1], unit="file", disable=not progress)
        self.tiles: tqdm | None = None  # tiles decoded to pixels, once a long file comes
        self._start = time.perf_counter()

    def expect_tiles(self, n: int) -> None:
        """A file of n tiles starts decoding: count them on the tile bar (made for long files)."""
        if self.tiles is None and self.progress and n >= LONG_FILE_TILES:
            self.tiles = tqdm(total=0, desc="tiles", unit="tile", leave=False)
        if self.tiles is not None:
            self.tiles.total += n
            self.tiles.refresh()

    def tiles_done(self, n: int) -> None:
        if self.tiles is not None:
            self.tiles.update(n)

    def fail(self, src: object, reason: str) -> None:
        self.summary.failures.append(Failure(str(src), reason))
        self.bar.update()

    def taken(self, job: Job) -> bool:
        """True (and a failure) when the job's output exists and may not be replaced."""
        if job.dst is not None and not self.overwrite and os.path.lexists(job.dst):
            self.fail(job.src, _EXISTS)
            return True
        return False

    def drain(self, stream: Iterator[tuple[Job, Any]], write: Callable[[Job, Any], None]) -> None:
        """Write each result; an output taken meanwhile or unwritable is a failure."""
        for job, result in stream:
            try:
                write(job, result)
            except OutputExistsError:
                self.fail(job.src, _EXISTS)
                continue
            except RecordNameError as err:
                self.fail(job.src, f"cannot be stored in a container: {err}")
                continue
            except OSError as err:
                self.fail(job.src, f"cannot write: {err.strerror}")
                continue
            self.summary.done += 1
            self.bar.update()

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *_: object) -> None:
        if self.tiles is not None:
            self.tiles.close()
        self.bar.close()
        self.summary.seconds = time.perf_counter() - self._start


def _images(jobs: list[Job], run: _Run, max_pixels: int) -> Iterator[tuple[Job, Image.Image]]:
    """Each job's image, read only when the encoder asks for it; failures are recorded."""
    for job in jobs:
        if run.taken(job):
            continue
        try:
            image = load_rgb(job.src, max_pixels=max_pixels)
        except BadImageError as err:
            run.fail(job.src, image_failure_reason(str(err), job.src))
            continue
        run.summary.bytes_in += _file_size(job.src)
        yield job, image


def _count(summary: Summary, encoded: Encoded) -> None:
    w, h = encoded.header.size
    summary.pixels += w * h
    summary.bytes_out += len(encoded.data)
    summary.tokens += encoded.header.num_tokens
    summary.target_missed += encoded.target_met is False
    summary.capped += encoded.capped


def encode_files(
    codec: Codec,
    inputs: list[str],
    output: str | None = None,
    options: EncodeOptions | None = None,
    overwrite: bool = False,
    append: bool = False,
    max_pixels: int = MAX_PIXELS,
    progress: bool = False,
) -> Summary:
    """Encode image files, folders and globs to .vtok files (or into one .vtoks container).

    Args:
        codec: the tokenizer to encode with.
        inputs: files, folders, globs.
        output: see `cli.batch.paths`; a name ending in ".vtoks" writes one container.
        options: k, target PSNR, layout, refinement.
        overwrite: replace existing outputs.
        append: add to an existing container.
        max_pixels: larger images fail as too large (JPEGs decode downscaled instead).
        progress: show a progress bar on stderr.

    Raises:
        UsageError: impossible output arguments (nothing is read or written).
    """
    options = options or EncodeOptions()
    codec.check_options(options)
    into_box = output is not None and output.endswith(".vtoks")
    if append and not into_box:
        raise UsageError("--append needs -o ending in .vtoks (a container)")
    if into_box and Path(output).is_dir():
        raise UsageError(f"-o {output} is a directory, not a .vtoks container")
    if into_box and Path(output).exists() and not (overwrite or append):
        raise UsageError(f"{output} exists (--overwrite replaces it, --append adds to it)")
    jobs, failed, ignored = plan(inputs, output, image_extensions(), "" if into_box else ".vtok")
    if into_box:  # a name the container would refuse fails before its image is encoded
        jobs, unnamed = _storable(jobs)
        failed += unnamed
    summary = Summary("encoded", failures=[Failure(p, r) for p, r in failed], ignored=ignored)
    with _Run(summary, len(jobs), progress, overwrite) as run:
        stream = codec.encode_stream(_images(jobs, run, max_pixels), options)
        if not into_box:

            def write(job: Job, encoded: Encoded) -> None:
                write_atomic(job.dst, encoded.data, overwrite)
                _count(summary, encoded)

            run.drain(stream, write)
            return summary
        with Container(output, "a" if append else "w") as box:

            def append_to_box(job: Job, encoded: Encoded) -> None:
                box.append(job.rel, encoded.data)
                _count(summary, encoded)

            run.drain(stream, append_to_box)
    return summary


def _storable(jobs: list[Job]) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs whose names a container can store, and (input, reason) for the others."""
    kept, failed = [], []
    for job in jobs:
        problem = name_problem(job.rel)
        if problem is None:
            kept.append(job)
        else:
            failed.append(
                (str(job.src), "cannot be stored in a container: " + describe(job.rel, problem))
            )
    return kept, failed


def _save(image: Image.Image, fmt: str, quality: int | None) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
    elif fmt == "webp":
        lossless = quality is None
        image.save(buf, format="WEBP", lossless=lossless, quality=100 if lossless else quality)
    else:
        image.save(buf, format="JPEG", quality=95 if quality is None else quality)
    return buf.getvalue()


def _entropy_bar(data: bytes, run: _Run) -> tqdm | None:
    """A bar over the tiles of a long entropy-coded file, while its ids decode."""
    if not run.progress:
        return None
    try:
        header, _ = read_header(data)
    except VtokError:
        return None  # `Codec.read` says why
    if header.coding == CODING_BITPACK or header.num_tiles < LONG_FILE_TILES:
        return None
    return tqdm(total=header.num_tiles, desc="entropy decoding", unit="tile", leave=False)


def _read(codec: Codec, job: Job, data: bytes, run: _Run) -> Iterator[tuple[Job, Any]]:
    """The parsed token file of one job, unless its output is taken or the file is refused
    (damaged, from another model, or asking for more than the run's limits allow)."""
    if run.taken(job):
        return
    bar = _entropy_bar(data, run)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LimitWarning)
            token_file = codec.read(data, source=job.src, progress=bar and bar.update)
    except VtokError as err:
        run.fail(job.src, str(err))
        return
    except LimitError as err:  # its message starts with the file's name, as the failure line
        run.fail(job.src, str(err).removeprefix(f"{job.src}: "))
        return
    finally:
        if bar is not None:
            bar.close()
    for w in caught:  # a large image: one line on stderr, the file still decodes
        if issubclass(w.category, LimitWarning):
            tqdm.write(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    run.summary.bytes_in += len(data)
    run.expect_tiles(token_file.header.num_tiles)
    yield job, token_file


def _records(codec: Codec, job: Job, suffix: str, run: _Run) -> Iterator[tuple[Job, Any]]:
    """A container's records as jobs writing to a folder named after it."""
    folder, seen = job.dst.with_suffix(""), set()
    try:
        box = Container(job.src)
    except (OSError, VtokError) as err:
        run.fail(job.src, f"unreadable container: {err}")
        return
    with box:
        if box.damaged_tail:
            run.summary.failures.append(
                Failure(f"{job.src}[{len(box)}]", "incomplete last record (interrupted?)")
            )
        for i in range(len(box)):
            try:
                name, data = box.record(i)
            except RecordError as err:  # this record only: the others are still decoded
                run.fail(f"{job.src}[{i}]", err.reason)
                continue
            rel = safe_name(name, suffix, f"{i:06d}")
            if rel in seen:  # two records of one name: the later gets its index
                rel = rel.with_name(f"{rel.stem}-{i}{suffix}")
            seen.add(rel)
            yield from _read(codec, Job(Path(f"{job.src}[{i}]"), name, folder / rel), data, run)


def _token_files(
    codec: Codec, jobs: list[Job], boxes: set[Path], suffix: str, run: _Run
) -> Iterator[tuple[Job, Any]]:
    for job in jobs:
        if job.src in boxes:
            yield from _records(codec, job, suffix, run)
            continue
        try:
            data = read_regular(job.src)
        except OSError as err:
            run.fail(job.src, f"unreadable: {err.strerror}")
            continue
        yield from _read(codec, job, data, run)


def decode_files(
    codec: Codec,
    inputs: list[str],
    output: str | None = None,
    fmt: str = "png",
    quality: int | None = None,
    num_steps: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    deblock: bool = False,
) -> Summary:
    """Decode .vtok files (and .vtoks containers, folders, globs) to images at their original size.

    Args:
        codec: must hold the tokenizer that wrote the files (others are refused per file).
        inputs: files, folders, globs.
        output: see `cli.batch.paths`; a container's records go to a folder named after it.
        fmt: "png", "webp" or "jpeg".
        quality: WebP / JPEG quality (default: lossless WebP, JPEG 95).
        num_steps, seed: for sampling decoders.
        overwrite: replace existing outputs.
        progress: show a progress bar on stderr.
        deblock: blend tile borders (`codec.deblock`).
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    suffix = FORMATS[fmt]
    jobs, failed, ignored = plan(inputs, output, frozenset({".vtok", ".vtoks"}), suffix)
    summary = Summary("decoded", failures=[Failure(p, r) for p, r in failed], ignored=ignored)
    boxes = {job.src for job in jobs if is_container(job.src)}
    total = len(jobs) + sum(max(_count_records(p) - 1, 0) for p in boxes)

    def write(job: Job, image: Image.Image) -> None:
        data = _save(image, fmt, quality)
        write_atomic(job.dst, data, overwrite)
        summary.bytes_out += len(data)
        summary.pixels += image.size[0] * image.size[1]

    with _Run(summary, total, progress, overwrite) as run:
        items = _token_files(codec, jobs, boxes, suffix, run)
        if not deblock:
            run.drain(codec.decode_stream(items, num_steps, seed, progress=run.tiles_done), write)
            return summary
        tagged = (((job, tf.header), tf) for job, tf in items)
        decoded = codec.decode_stream(tagged, num_steps, seed, progress=run.tiles_done)
        run.drain(((job, blend(image, h)) for (job, h), image in decoded), write)
    return summary


def _count_records(path: Path) -> int:
    """Records in a container (0 when it cannot be opened: that fails later, with a reason)."""
    try:
        with Container(path) as box:
            return len(box)
    except (OSError, VtokError):
        return 0
