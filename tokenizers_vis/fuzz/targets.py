"""What the campaign attacks: each `Target` makes a hostile case from honest inputs and runs it
through the library the way a user's file would go.

A case `run` returns when the input was accepted and raises a `VistokError` when it was refused;
anything else is a finding. Oracles beyond "no foreign exception":
- `.vtok`: a mutation that kept the old checksum (a raw mutation) and was accepted must read back
  exactly the original file (header and ids): nothing damaged is read silently;
- `.vtoks`: every name a container gives back obeys `codec.record_names`; in a version 2
  container a raw mutation never yields a name that was not written; a record's `.vtok` bytes
  that read must be one the writer stored; appending to a damaged container keeps the record
  appended; decoding a container with `decode_files` writes only inside the output folder and
  leaves no temporary file.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tokenizers_vis.codec import entropy_coding
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.container import Container, RecordError
from tokenizers_vis.codec.record_names import name_problem
from tokenizers_vis.errors import VistokError
from tokenizers_vis.fuzz.mutate import HOSTILE_NAMES, fix_crc, mutate_bytes, mutate_json

__all__ = ["Case", "Target", "container_target", "json_file_target", "vtok_target"]


@dataclass
class Case:
    """One hostile input; `expect` is what it must read as if accepted (None: anything)."""

    data: bytes
    expect: Any = None
    note: str = ""


@dataclass
class Target:
    """A kind of input: `make(rng)` a case, `run(case)` it (see the module docstring)."""

    name: str
    make: Callable[[random.Random], Case]
    run: Callable[[Case], None]
    weight: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def _same(a: fmt.TokenFile, b: fmt.TokenFile) -> bool:
    return a.header == b.header and np.array_equal(a.ids, b.ids)


_SIDES = (1, 2, 15, 16, 17, 64, 1000, 30_000, 65_536, 1 << 24)


def _header_mutation(rng: random.Random, data: bytes) -> bytes:
    """A well-formed file (valid checksum) whose header claims something else: a size, a canvas,
    tile lengths, a coding, a coding group, or a payload of another length."""
    header, payload_len = fmt.read_header(data)
    payload = data[len(data) - 4 - payload_len : len(data) - 4]
    kind, changes = rng.randrange(6), {}
    if kind == 0:  # a resampled canvas drawn to another size (one tile, a huge output)
        changes["size"] = (rng.choice(_SIDES), rng.choice(_SIDES))
    elif kind in (1, 2):  # a tile grid of another size, every tile claimed
        side = header.tile_size
        canvas = (side * rng.choice((1, 2, 8, 64, 256)), side * rng.choice((1, 2, 8, 64, 256)))
        tiles = -(-canvas[0] // side) * -(-canvas[1] // side)
        k = rng.randint(1, header.max_tokens)
        changes.update(size=canvas, coded_size=canvas, lengths=(k,) * tiles)
        if kind == 2:
            changes["size"] = (rng.choice(_SIDES), rng.choice(_SIDES))
    elif kind == 3:
        changes["lengths"] = tuple(
            rng.randint(1, header.max_tokens) for _ in range(len(header.lengths))
        )
    elif kind == 4 and header.coding != fmt.CODING_BITPACK:
        params = entropy_coding.EntropyParams.parse(header.coding_params)
        group = rng.choice((1, 2, 1000, 65_536, 1 << 24, 1 << 34))
        changes["coding_params"] = dataclasses.replace(params, group=group).to_bytes()
    else:
        payload = rng.choice((b"", payload[: len(payload) // 2], payload + bytes(1000)))
    try:
        header = dataclasses.replace(header, **changes)
    except VistokError:  # our own Header refuses it: the raw bytes may still say it
        return fix_crc(mutate_bytes(rng, data))
    return fmt.dumps_payload(header, payload)


def vtok_target(name: str, codec: Any, seeds: list[bytes], weight: int = 1) -> Target:
    """`.vtok` files of `codec` (a `Codec`): read, then decoded to an image."""
    originals = [codec.read(s) for s in seeds]

    def make(rng: random.Random) -> Case:
        i = rng.randrange(len(seeds))
        r = rng.random()
        if r < 0.35:
            return Case(mutate_bytes(rng, seeds[i], seeds), originals[i], "raw")
        if r < 0.7:
            return Case(fix_crc(mutate_bytes(rng, seeds[i], seeds)), None, "crc fixed")
        return Case(_header_mutation(rng, seeds[i]), None, "header")

    def run(case: Case) -> None:
        token_file = codec.read(case.data)
        if case.expect is not None and not _same(token_file, case.expect):
            raise AssertionError("a damaged file was read silently (its checksum was not fixed)")
        next(codec.decode_stream([(None, token_file)]))

    return Target(name, make, run, weight, {"seeds": list(seeds)})


def _record(name: bytes, data: bytes, version: int) -> bytes:
    named = fmt.encode_varint(len(name)) + name
    if version == 1:
        return struct.pack("<I", len(named) + len(data)) + named + data
    head = struct.pack("<I", len(named) + 4 + len(data))
    return head + named + struct.pack("<I", zlib.crc32(head + named)) + data


def _box(records: list[tuple[bytes, bytes]], version: int) -> bytes:
    return b"VTKS" + bytes([version]) + b"".join(_record(n, d, version) for n, d in records)


def _hostile_name(rng: random.Random) -> bytes:
    if rng.random() < 0.7:
        return rng.choice(HOSTILE_NAMES).encode("utf-8", "surrogatepass")
    return rng.randbytes(rng.randint(0, 24))


def container_target(
    name: str, codec: Any, records: list[tuple[str, bytes]], work: Path, weight: int = 1
) -> Target:
    """`.vtoks` containers of `codec`'s files (versions 1 and 2): opened, every record read,
    some appended to, some decoded to a folder with `decode_files`."""
    from tokenizers_vis.cli.batch.files import decode_files  # the command's own path

    honest = [(n.encode(), d) for n, d in records]
    names, datas = {n for n, _ in records}, {d for _, d in records}
    work.mkdir(parents=True, exist_ok=True)

    def make(rng: random.Random) -> Case:
        version = rng.choice((1, 2, 2))
        recs = list(honest)
        if rng.random() < 0.4:  # hostile names under valid checksums
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(recs))
                recs[i] = (_hostile_name(rng), recs[i][1])
            return Case(_box(recs, version), None, f"v{version} names")
        data = mutate_bytes(rng, _box(recs, version), focus=1 << 30)
        return Case(data, names if version == 2 else None, f"v{version} raw")

    def run(case: Case) -> None:
        path = work / "case.vtoks"
        path.write_bytes(case.data)
        with Container(path) as box:
            for i in range(len(box)):
                try:
                    got, data = box.record(i)
                except RecordError:
                    continue
                if name_problem(got) is not None:
                    raise AssertionError(f"record {i}: a refused name was given back: {got!r}")
                if case.expect is not None and got not in case.expect:
                    raise AssertionError(f"record {i}: a damaged name was read silently: {got!r}")
                try:
                    codec.read(data)
                except fmt.VtokError:
                    continue
                if data not in datas:
                    raise AssertionError(f"record {i}: damaged .vtok bytes were read silently")
        digest = zlib.crc32(case.data)
        if digest % 4 == 0:
            _append(path, records[0][1])
        elif digest % 4 == 1:
            _decode_into_folder(decode_files, codec, path, work)

    return Target(name, make, run, weight, {"seeds": [_box(honest, 2), _box(honest, 1)]})


def _append(path: Path, data: bytes) -> None:
    with Container(path, "a") as box:
        index = box.append("appended.png", data)
    with Container(path) as box:
        if box.record(index) != ("appended.png", data):
            raise AssertionError("an append to a damaged container did not read back")


def _decode_into_folder(decode_files: Callable, codec: Any, path: Path, work: Path) -> None:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    before = {p.name for p in work.iterdir()}
    decode_files(codec, [str(path)], str(out / "o"))
    after = {p.name for p in work.iterdir()}
    if after - before - {"out"}:
        raise AssertionError(f"decoding wrote outside its folder: {sorted(after - before)}")
    if any(p.name.endswith(".tmp") for p in out.rglob("*")):
        raise AssertionError("decoding left a temporary file")


def json_file_target(
    name: str, directory: Path, filename: str, load: Callable[[Path], Any], work: Path
) -> Target:
    """A pretrained directory whose `filename` (a JSON file) is mutated, loaded by `load`."""
    shutil.copytree(directory, work, dirs_exist_ok=True)
    text = (directory / filename).read_bytes()
    doc = json.loads(text)

    def make(rng: random.Random) -> Case:
        if rng.random() < 0.8:
            return Case(mutate_json(rng, doc), None, "json")
        return Case(mutate_bytes(rng, text, focus=len(text)), None, "bytes")

    def run(case: Case) -> None:
        (work / filename).write_bytes(case.data)
        load(work)

    return Target(name, make, run, extra={"seeds": [text]})
