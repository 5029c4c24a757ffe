"""`vistok info`: a .vtok file's header, payload size and bits per token (or a .vtoks
container's records).

    vistok info photo.vtok
    vistok info set.vtoks --json

Needs no model. Exit status: 0 every file read, 1 some file (or some record of a container) is
not readable (the reason is printed; the container's other records are still described), 2
usage error. Everything printed that comes from a file (record names, reasons quoting them) is
escaped: a newline, a terminal escape or U+202E shows as `\\n`, `\\x1b`, `\\u202e`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tokenizers_vis.cli.batch.paths import read_regular
from tokenizers_vis.cli.common import ArgumentParser, run
from tokenizers_vis.codec.container import Container, RecordError, is_container
from tokenizers_vis.codec.entropy_coding import EntropyParams
from tokenizers_vis.codec.format import (
    CODING_BITPACK,
    CODINGS,
    CRC_BYTES,
    Header,
    VtokError,
    read_header,
)
from tokenizers_vis.text import printable


def describe(header: Header, file_bytes: int, payload: int) -> dict[str, Any]:
    """The header as JSON-able fields, with the byte budget and the rate.

    `bits_per_token` is what the payload spends: the fixed width for bit-packed files, the
    actual payload bits per token for entropy-coded ones (`fixed_bits_per_token` beside it).
    """
    k = header.uniform_k
    w, h = header.size
    coding = CODINGS.get(header.coding, "unknown")
    entropy = None
    if header.coding in CODINGS and header.coding != CODING_BITPACK:
        params = EntropyParams.parse(header.coding_params)
        entropy = {
            "model_id": params.model_id.hex(),
            "ids_crc32": f"{params.ids_crc:08x}",
            "group": params.group,
            "class": params.condition,
        }
    fixed = header.bits_per_token
    return {
        "version": header.version,
        "coding": {"id": header.coding, "name": coding},
        "tokenizer_id": header.tokenizer_id.hex(),
        "size": list(header.size),
        "layout": "tile" if header.layout == 0 else "resampled",
        "coded_size": list(header.coded_size),
        "tile_size": header.tile_size,
        "grid": list(header.grid),
        "tiles": header.num_tiles,
        "max_tokens": header.max_tokens,
        "k": k if k is not None else {"min": min(header.lengths), "max": max(header.lengths)},
        "tokens": header.num_tokens,
        "vocab_sizes": list(header.vocab_sizes),
        "bits_per_token": fixed if entropy is None else 8 * payload / header.num_tokens,
        "fixed_bits_per_token": fixed,
        "entropy": entropy,
        "bytes": {
            "file": file_bytes,
            "header": file_bytes - payload - CRC_BYTES,
            "payload": payload,
            "checksum": CRC_BYTES,
        },
        "bits_per_pixel": 8 * file_bytes / (w * h),
    }


def _lines(name: str, d: dict[str, Any]) -> list[str]:
    b, k = d["bytes"], d["k"]
    ks = f"k = {k} per tile" if isinstance(k, int) else f"k = {k['min']}..{k['max']} per tile"
    cols, rows = d["grid"]
    cw, ch = d["coded_size"]
    canvas = "" if d["layout"] == "tile" else f", resampled from a {cw}x{ch} canvas"
    return [
        f"{name}: {b['file']} bytes = header {b['header']} + payload {b['payload']} "
        f"+ checksum {b['checksum']} ({d['bits_per_pixel']:.4f} bits/pixel)",
        f"  format      .vtok version {d['version']}, payload coding {d['coding']['id']} "
        f"({d['coding']['name']})",
        f"  tokenizer   {d['tokenizer_id']}",
        f"  image       {d['size'][0]}x{d['size'][1]}",
        f"  layout      {d['layout']}: {cols}x{rows} = {d['tiles']} tiles of "
        f"{d['tile_size']} px{canvas}",
        f"  tokens      {ks} (K = {d['max_tokens']}), {d['tokens']} in all",
        f"  vocabulary  {tuple(d['vocab_sizes'])}: {d['fixed_bits_per_token']} bits per token"
        + (" bit-packed" if d["entropy"] else ""),
    ] + _entropy_lines(d)


def _entropy_lines(d: dict[str, Any]) -> list[str]:
    e = d["entropy"]
    if e is None:
        return []
    condition = "unconditional" if e["class"] is None else f"class {e['class']}"
    bits, fixed = d["bits_per_token"], d["fixed_bits_per_token"]
    return [
        f"  entropy     model {e['model_id']}, {condition}, tiles in groups of {e['group']}, "
        f"ids CRC-32 {e['ids_crc32']}",
        f"  rate        {bits:.3f} bits per token"
        + (f" ({bits / fixed:.1%} of bit-packed)" * bool(fixed)),
    ]


def _container(path: Path) -> tuple[dict[str, Any], list[str], bool]:
    """A container's document and lines, and whether every record was read. A record that
    cannot be read (damaged, a name not allowed) is listed with its reason; the others are
    still described."""
    shown = printable(str(path))
    out: dict[str, Any] = {"file": str(path), "container": True, "records": []}
    ok = True
    with Container(path) as box:
        size = path.stat().st_size
        lines = [
            f"{shown}: .vtoks container version {box.version}, {len(box)} records, {size} bytes"
        ]
        out["version"] = box.version
        if box.damaged_tail:
            lines.append(f"  warning: an incomplete last record ({box.damaged_tail} bytes)")
            out["damaged_tail"] = box.damaged_tail
        for i in range(len(box)):
            try:
                name, data = box.record(i)
                header, payload = read_header(data)
            except VtokError as err:
                reason = err.reason if isinstance(err, RecordError) else str(err)
                out["records"].append({"index": i, "error": reason})
                lines.append(f"  [{i}] error: {printable(reason, backslash=False)}")
                ok = False
                continue
            d = describe(header, len(data), payload) | {"index": i, "name": name}
            out["records"].append(d)
            lines.append(
                f"  [{i}] {printable(name)}: {d['size'][0]}x{d['size'][1]}, {d['tiles']} tiles, "
                f"{d['tokens']} tokens, {len(data)} bytes, {d['bits_per_token']:.3g} bits/token"
            )
    return out, lines, ok


def info(argv: list[str] | None) -> int:
    parser = ArgumentParser(prog="vistok info", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    status, documents = 0, []
    for text in args.files:
        path = Path(text)
        try:
            if is_container(path):
                doc, lines, ok = _container(path)
                status = status if ok else 1
            else:
                data = read_regular(path)
                header, payload = read_header(data)
                doc = {"file": text} | describe(header, len(data), payload)
                lines = _lines(printable(text), doc)
        except OSError as err:
            print(f"vistok info: {printable(text)}: {err.strerror}", file=sys.stderr)
            status = 1
            continue
        except VtokError as err:  # not .vtok, truncated, corrupted, newer
            print(
                f"vistok info: {printable(text)}: {printable(str(err), backslash=False)}",
                file=sys.stderr,
            )
            status = 1
            continue
        documents.append(doc)
        if not args.json:
            print("\n".join(lines))
    if args.json:
        print(json.dumps(documents, indent=2))
    return status


def main(argv: list[str] | None = None) -> int:
    """Run `vistok info`; returns the exit status."""
    return run(lambda: info(argv), "vistok info")
