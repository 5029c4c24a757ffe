"""Seeded mutations of the bytes and JSON documents vistok reads from strangers.

Every function takes a `random.Random`, so a case is reproduced from (seed, case index) alone.
Byte mutations are the classic ones (bit flips, interesting values, truncation, deletion,
insertion, duplication, splicing); `fix_crc` then recomputes a trailing CRC-32 so a mutation gets
past the checksum into the parser behind it. JSON mutations change one node of a document: its
type, its value (the edges: 0, -1, 2^31, 2^63, 1e308, NaN), its size (long strings and lists),
its nesting (deep lists), or remove / add keys.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from typing import Any

__all__ = ["HOSTILE_NAMES", "fix_crc", "mutate_bytes", "mutate_json"]

_INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x10, 0x20, 0x40)
_VARINTS = (b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x10", b"\xff\xff\xff\x07", b"\x80\x01")

# Names a hostile container may carry: every rule of `codec.record_names`, and names that pass.
HOSTILE_NAMES = (
    "a\x00b.png",
    "../../etc/passwd",
    "/abs/path.png",
    "C:\\Windows\\x.png",
    "line\nbreak.png",
    "\x1b[2J\x1b[31mred.png",
    "evil\u202egnp.exe",
    "sep\u2028x.png",
    "a//b.png",
    "./a.png",
    "",
    "x" * 300,
    "deep/" * 900 + "x.png",
    "\U0001f600\u200d.png",
    "ok/name.png",
)


def _op(rng: random.Random, data: bytearray, others: list[bytes], focus: int) -> bytearray:
    """One mutation; `focus` bytes at the start (a header) are hit more often."""
    n = len(data)
    pos = rng.randrange(min(n, focus)) if n and rng.random() < 0.6 else rng.randrange(n or 1)
    kind = rng.randrange(9)
    if n == 0 or kind == 8:  # splice: this file's head, another's tail
        other = rng.choice(others) if others else bytes(data)
        cut = rng.randrange(len(other) + 1)
        return data[:pos] + bytearray(other[cut:])
    if kind == 0:
        data[pos] ^= 1 << rng.randrange(8)
    elif kind == 1:
        for _ in range(rng.randint(2, 16)):
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == 2:
        data[pos] = rng.choice(_INTERESTING)
    elif kind == 3:
        varint = rng.choice(_VARINTS)
        data[pos : pos + len(varint)] = varint
    elif kind == 4:
        del data[rng.randrange(n) :]
    elif kind == 5:
        del data[pos : pos + rng.randint(1, 16)]
    elif kind == 6:
        data[pos:pos] = rng.randbytes(rng.randint(1, 16))
    else:
        span = data[pos : pos + rng.randint(1, 64)]
        data[pos:pos] = span * rng.randint(1, 64)
    return data


def mutate_bytes(
    rng: random.Random, data: bytes, others: list[bytes] = (), focus: int = 48
) -> bytes:
    """`data` after 1 to 4 mutations (see the module docstring)."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        out = _op(rng, out, list(others), focus)
    return bytes(out)


def fix_crc(data: bytes) -> bytes:
    """`data` with its last 4 bytes replaced by the CRC-32 (little-endian) of the rest."""
    if len(data) < 4:
        return data
    return data[:-4] + zlib.crc32(data[:-4]).to_bytes(4, "little")


def _value(rng: random.Random, old: Any) -> Any:
    choices = [
        0, -1, 1, 2, 3, 7, 2**31, 2**63, 10**30, 1e308, -1e308, math.nan, math.inf, 0.5, -0.0,
        True, False, None, "", "32", "x" * rng.choice((1, 100, 100_000)), "\x00\ud800",
        [], {}, [1, 2], [0] * rng.choice((1, 8, 10_000)), {"name": "nonexistent"},
        {"name": old} if isinstance(old, str) else [old],
    ]  # fmt: skip
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        choices += [old + 1, old - 1, old * 2, -old, old * 1000, str(old), float(old)]
    return rng.choice(choices)


_DEEP = "\u0000deep:{}"  # a placeholder replaced by deeply nested text after json.dumps


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every (key or index) path to a node of `doc`, the root included."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:16]):
            out += _paths(value, (*prefix, i))
    return out


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def mutate_json(rng: random.Random, doc: Any) -> bytes:
    """A JSON document (UTF-8 bytes) differing from `doc` in one to three nodes; sometimes its
    text is then damaged as bytes (truncated, invalid UTF-8, a BOM, deep nesting)."""
    doc = json.loads(json.dumps(doc))  # a private copy
    for _ in range(rng.choice((1, 1, 2, 3))):
        path = rng.choice(_paths(doc))
        node = doc
        for key in path:
            node = node[key]
        kind = rng.randrange(6)
        if kind == 0 and isinstance(node, dict) and node:
            del node[rng.choice(list(node))]
        elif kind == 1 and isinstance(node, dict):
            node[rng.choice(("extra", "name", "depth", "width", "levels"))] = _value(rng, 1)
        elif kind == 2:
            doc = _set(doc, path, _DEEP.format(rng.choice((2, 50, 1000, 100_000))))
        else:
            doc = _set(doc, path, _value(rng, node))
    text = json.dumps(doc, allow_nan=True)
    for depth in (2, 50, 1000, 100_000):  # built as text: json.dumps would recurse that deep
        text = text.replace(json.dumps(_DEEP.format(depth)), "[" * depth + "1" + "]" * depth)
    text = text.encode("utf-8", "surrogatepass")
    damage = rng.randrange(12)
    if damage == 0:
        return text[: rng.randrange(len(text) + 1)]
    if damage == 1:
        return b"\xef\xbb\xbf" + text
    if damage == 2:
        pos = rng.randrange(len(text) + 1)
        return text[:pos] + b"\xff\xfe" + text[pos:]
    return text
