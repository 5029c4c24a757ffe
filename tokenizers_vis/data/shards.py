"""WebDataset tar shards: pack any dataset once, stream it at scale.

Layout written by `pack_dataset(dataset, out_dir, split)`:
    {out_dir}/{split}-000000.tar ...   samples {key}.png (lossless RGB), {key}.cls (label as
                                       ASCII), {key}.json (source, name, split, original size)
    {out_dir}/{split}.json             class names, image size, per-shard counts, skip counts

Every shard is written to a hidden temporary file and renamed when complete
(`tokenizers_vis.atomic.AtomicFile`), so a crash or Ctrl-C leaves no partial `.tar` for a glob
to pick up. A bad input sample is skipped and counted; the pack
carries on.

`ShardDataset` reads shards back as `(image (3, s, s) float in [-1, 1], label)`. Training
streams are `resampled` (each rank and worker draws shards with its own seed, the WebDataset
recipe for DDP: no rank runs dry and no split is needed) and shuffled through a buffer;
evaluation streams are read once, split by node and then by worker. A resumed training run
re-seeds its stream (`ShardDataset.resume`); it cannot pick up the exact interrupted one.
"""

from __future__ import annotations

import glob
import io
import json
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from tokenizers_vis.atomic import AtomicFile, OutputExistsError, atomic_write
from tokenizers_vis.data.errors import MissingDataError
from tokenizers_vis.data.transforms import (
    BadImageError,
    WorkerGenerator,
    load_rgb,
    mix_seed,
    random_crop_flip,
    resize_square,
    to_tensor,
)

__all__ = ["PackSummary", "ShardDataset", "iter_records", "pack_dataset", "shard_urls"]

Record = tuple[np.ndarray, int, dict]


@dataclass
class PackSummary:
    """What `pack_dataset` wrote and what it skipped (reason -> count)."""

    split: str
    written: int = 0
    shards: dict[str, int] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)


def iter_records(dataset, seed: int | None = None) -> Iterator[tuple[int, Record | BadImageError]]:
    """(index, record) for every item; a bad item gives its BadImageError instead of a record.

    Works for the map-style datasets (they have `record(i)`, visited in a permutation seeded
    by `seed`, or in order if None) and for `ShardDataset` (in stream order).
    """
    if hasattr(dataset, "record"):
        order = range(len(dataset))
        if seed is not None:
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        for i in map(int, order):
            try:
                yield i, dataset.record(i)
            except BadImageError as err:
                yield i, err
    else:
        yield from enumerate(dataset.records())


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


class _AtomicShards:
    """ShardWriter-like: `{prefix}-{n:06d}.tar`, each renamed into place only once complete."""

    def __init__(self, out_dir: Path, prefix: str, maxcount: int):
        self.out_dir, self.prefix, self.maxcount = out_dir, prefix, maxcount
        self.done: dict[str, int] = {}
        self._out: AtomicFile | None = None
        self._tar, self._count = None, 0

    def write(self, sample: dict) -> None:
        if self._tar is None or self._count >= self.maxcount:
            self._finish()
            self._out = AtomicFile(self.out_dir / f"{self.prefix}-{len(self.done):06d}.tar")
            # mtime fixed so packing the same data twice gives byte-identical shards.
            self._tar, self._count = wds.TarWriter(self._out.file, encoder=False, mtime=0.0), 0
        self._tar.write(sample)
        self._count += 1

    def _finish(self) -> None:
        if self._tar is None:
            return
        self._tar.close()  # ends the tar stream; the file stays open for the commit
        self.done[self._out.commit().name] = self._count
        self._tar = self._out = None

    def close(self, ok: bool) -> None:
        """Finish the last shard, or (after an error) delete the half-written one."""
        if ok:
            self._finish()
        elif self._tar is not None:
            try:
                self._tar.close()  # finishes the tar stream in the temp file we then delete
            except OSError:
                pass  # e.g. the disk is full: the temp file goes anyway
            self._out.discard()
            self._tar = self._out = None


def _prepare_out_dir(out_dir: Path, split: str, overwrite: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    old = sorted(out_dir.glob(f"{split}-*.tar"))
    if old and not overwrite:
        raise OutputExistsError(
            f"{out_dir} already holds {len(old)} {split} shards; "
            "use --overwrite (overwrite=True) to replace them"
        )
    stale = [*out_dir.glob(f"{split}-*.tar.tmp"), *out_dir.glob(f".{split}-*.tar.*.tmp")]
    for path in [*old, *stale, out_dir / f"{split}.json"]:
        path.unlink(missing_ok=True)  # stale temps are leftovers of a killed pack


def pack_dataset(
    dataset,
    out_dir: str | os.PathLike,
    split: str,
    shard_size: int = 1000,
    overwrite: bool = False,
    progress: bool = True,
    source: str = "",
    seed: int | None = 0,
) -> PackSummary:
    """Write a dataset's records to `{out_dir}/{split}-NNNNNN.tar` shards.

    Args:
        dataset: a map-style dataset with `record(i)` or a `ShardDataset`.
        out_dir: output folder, created if missing.
        split: the shard name prefix and the split recorded in `{split}.json`.
        shard_size: samples per shard.
        overwrite: replace existing `{split}` shards instead of refusing.
        progress: show a tqdm bar.
        source: the data spec, recorded in `{split}.json`.
        seed: samples are written in a permutation seeded by this (None: dataset order), so
            every shard mixes all classes even though emoji and folders list them in order
            and a shuffle buffer only mixes neighbours. Keys keep the dataset index.

    Returns:
        PackSummary with the shards written and the skip reasons counted.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, split, overwrite)
    summary, size = PackSummary(split), None
    writer, ok = _AtomicShards(out_dir, split, shard_size), False
    total = len(dataset) if hasattr(dataset, "__len__") else getattr(dataset, "count", None)
    try:
        for i, rec in tqdm(
            iter_records(dataset, seed),
            total=total,
            desc=f"pack {split}",
            unit="img",
            disable=not progress,
        ):
            if isinstance(rec, BadImageError):
                summary.skipped[str(rec).split(":")[0]] += 1
                continue
            image, label, info = rec
            size = size or image.shape[0]
            meta = {**info, "key": f"{i:08d}", "label": label, "size": list(image.shape[:2])}
            writer.write(
                {
                    "__key__": f"{i:08d}",
                    "png": _png(image),
                    "cls": b"%d" % label,
                    "json": json.dumps(meta, sort_keys=True).encode(),
                }
            )
            summary.written += 1
        ok = True
    finally:
        writer.close(ok)
    summary.shards = writer.done
    info = {
        "format": "vistok-shards/1",
        "split": split,
        "source": source,
        "size": size,
        "count": summary.written,
        "shards": summary.shards,
        "skipped": dict(summary.skipped),
        "class_names": list(getattr(dataset, "class_names", [])),
    }
    atomic_write(out_dir / f"{split}.json", (json.dumps(info, indent=1) + "\n").encode())
    return summary


def shard_urls(path: str | os.PathLike | list[str], split: str | None = None) -> list[str]:
    """Resolve a shard spec to a sorted list of tar paths.

    Args:
        path: a folder (its `{split}-*.tar`, or every `*.tar` when split is None), a glob,
            brace notation, or a list of paths. Globs and lists ignore `split`.
        split: which split to take from a folder.

    Raises:
        FileNotFoundError: nothing matched.
    """
    if isinstance(path, list | tuple):
        urls = [str(p) for p in path]
    elif Path(path).is_dir():
        urls = sorted(glob.glob(os.path.join(glob.escape(str(path)), f"{split or '*'}-*.tar")))
        urls = urls if split else sorted(glob.glob(os.path.join(glob.escape(str(path)), "*.tar")))
    else:
        urls = sorted(
            u
            for pattern in wds.shardlists.expand_urls(str(path))
            for u in (glob.glob(pattern) or ([pattern] if Path(pattern).is_file() else []))
        )
    if not urls:
        where = f"{split}-*.tar in {path}" if split and Path(path).is_dir() else repr(path)
        raise MissingDataError(f"no .tar shards match {where}")
    return urls


def _pack_info(urls: list[str]) -> tuple[list[str], int | None]:
    """(class names, sample count) from the `{split}.json` files beside the shards."""
    class_names, count, infos = [], 0, {}
    for url in urls:
        p = Path(url)
        meta = p.parent / f"{p.name.rsplit('-', 1)[0]}.json"
        if meta not in infos:
            infos[meta] = json.loads(meta.read_text()) if meta.is_file() else {}
        class_names = class_names or infos[meta].get("class_names", [])
        if p.name not in infos[meta].get("shards", {}):
            return class_names, None
        count += infos[meta]["shards"][p.name]
    return class_names, count


def _worker_seed() -> int:
    """Distinct per rank and worker, and per epoch when workers are re-created.

    `get_worker_info().seed` is redrawn by the DataLoader for every new set of workers (from
    the RNG `seed_everything` seeds), so non-persistent workers do not replay the last epoch.
    """
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    info = torch.utils.data.get_worker_info()
    return mix_seed(rank, worker, 0 if info is None else info.seed)


class _Shuffle:
    """Buffer shuffle seeded per (seed, rank, worker, pass): reproducible yet distinct streams."""

    def __init__(self, bufsize: int, seed: int):
        self.bufsize, self.seed, self.passes = bufsize, seed, 0

    def __call__(self, src: Iterator) -> Iterator:
        rng = random.Random(mix_seed(self.seed, _worker_seed(), self.passes))
        self.passes += 1
        buf: list = []
        for sample in src:
            if len(buf) < self.bufsize:
                buf.append(sample)
                continue
            j = rng.randrange(len(buf))
            buf[j], sample = sample, buf[j]
            yield sample
        rng.shuffle(buf)
        yield from buf


class ShardDataset(torch.utils.data.IterableDataset):
    """Samples from tar shards written by `pack_dataset`.

    Args:
        urls: folder, glob, brace notation or list of tar files (see `shard_urls`).
        size: output side; images of another size are Lanczos-resized. None keeps them.
        split: which `{split}-*.tar` to take from a folder.
        resampled: draw shards with replacement forever (training); else one ordered pass,
            split across nodes and workers.
        shuffle_buffer: samples held for shuffling (0 or 1: no shuffling).
        augment: random crop (area 0.8-1) and horizontal flip.
        seed: seeds shard sampling, shuffling and augmentation.
        epoch_samples: with `resampled`, the samples each worker yields per epoch.

    Yields `(image (3, s, s) float32 in [-1, 1], label int)`. `class_names` and `count`
    come from the `{split}.json` written beside the shards (count is None if unknown).
    `resume` (called by `ResumableLoader` from a checkpoint) re-seeds a resampled stream.
    """

    def __init__(
        self,
        urls: str | os.PathLike | list[str],
        size: int | None = None,
        split: str | None = None,
        resampled: bool = False,
        shuffle_buffer: int = 0,
        augment: bool = False,
        seed: int = 0,
        epoch_samples: int | None = None,
    ):
        super().__init__()
        self.urls = shard_urls(urls, split)
        self.class_names, self.count = _pack_info(self.urls)
        self.size, self.augment, self.resampled = size, augment, resampled
        self.shuffle_buffer, self.seed, self.epoch_samples = shuffle_buffer, seed, epoch_samples
        self._rng = WorkerGenerator(seed)
        self._pipe: wds.DataPipeline | None = None
        self.resume_key = 0  # 0: a fresh run; else mixed into every seed of the stream
        self.first_pass: list[int] | None = None  # per worker: samples of the epoch already seen

    def resume(self, key: int, consumed: list[int] | None = None) -> None:
        """Continue a resampled stream after a checkpoint with a new stream seeded by `key`.

        WebDataset keeps no position in a resampled stream (shard draws, tar offsets and
        shuffle buffers of every worker), and replaying one would re-read every sample consumed
        so far, so a resumed run cannot see the batches the uninterrupted one would have. It
        does get: a stream seeded by `(seed, key)`, so it does not replay the samples the run
        started with and the same checkpoint always resumes the same way; re-seeded
        augmentation; and an epoch that ends about where the interrupted one would have.

        Args:
            key: batches consumed since the run began (0: the fresh-run stream).
            consumed: per data-loader worker (index 0 without workers), samples it yielded in
                the interrupted epoch; its first pass yields only the rest of `epoch_samples`.
                Empty or None: whole passes.
        """
        self.resume_key, self.first_pass = key, list(consumed or []) or None
        self._rng = WorkerGenerator(self._stream_seed())
        self._pipe = None  # rebuilt with the new seed

    def _stream_seed(self) -> int:
        # A fresh run keeps `seed` itself, so its stream is the one it always was.
        return mix_seed(self.seed, "resume", self.resume_key) if self.resume_key else self.seed

    def _samples(self) -> Iterable[dict]:
        # Built once per process and kept: its shard sampler and shuffler count passes, so a
        # persistent worker draws new shards and orders every epoch.
        if self._pipe is None:
            self._pipe = self._build()
        left, self.first_pass = self._first_pass_left(), None
        return self._pipe if left is None else islice(self._pipe, left)

    def _first_pass_left(self) -> int | None:
        if self.first_pass is None or not self.resampled or not self.epoch_samples:
            return None
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        seen = self.first_pass[worker] if worker < len(self.first_pass) else 0
        return max(0, self.epoch_samples - seen)

    def _build(self) -> wds.DataPipeline:
        seed = self._stream_seed()
        if self.resampled:
            stages = [
                wds.ResampledShards(
                    self.urls, seed=seed, worker_seed=_worker_seed, deterministic=True
                )
            ]
        else:
            stages = [wds.SimpleShardList(self.urls), wds.split_by_node, wds.split_by_worker]
        stages.append(wds.tarfile_to_samples(handler=wds.warn_and_continue))
        if self.shuffle_buffer > 1:
            stages.append(_Shuffle(self.shuffle_buffer, seed))
        pipe = wds.DataPipeline(*stages)
        return (
            pipe.with_epoch(self.epoch_samples) if self.resampled and self.epoch_samples else pipe
        )

    def _decode(self, sample: dict) -> Record:
        image = load_rgb(sample["png"])
        if self.size is not None and image.size != (self.size, self.size):
            image = resize_square(image, self.size)
        info = json.loads(sample["json"]) if "json" in sample else {"name": sample["__key__"]}
        return np.asarray(image), int(sample["cls"]), info

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pipe": None}  # each worker builds its own pipeline

    def records(self) -> Iterator[Record | BadImageError]:
        """(uint8 (s, s, 3), label, metadata) per sample, or the BadImageError of a bad one."""
        for sample in self._samples():
            try:
                yield self._decode(sample)
            except (BadImageError, KeyError, ValueError) as err:
                yield err if isinstance(err, BadImageError) else BadImageError(f"bad sample: {err}")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        for rec in self.records():
            if isinstance(rec, BadImageError):
                continue  # the packer already filtered; a corrupt shard must not stop training
            x = to_tensor(rec[0])  # (3 s s)
            if self.augment:
                x = random_crop_flip(x, self._rng())
            yield x, rec[1]
