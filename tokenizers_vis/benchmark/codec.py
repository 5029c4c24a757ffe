"""The codec's files/s: `encode_files` of PNG files to .vtok files and `decode_files` back,
as `vistok encode` / `vistok decode` run them (reading, tiling, batching, bit-packing, atomic
writes included).

The files are smooth random images of the model's tile size (one tile each, so files/s and
the tokenizer's images/s compare directly), written once into a temporary folder; each timed
run writes its outputs again over the previous run's (`overwrite=True`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tokenizers_vis.benchmark.common import Context, measure, smooth_images
from tokenizers_vis.benchmark.tokenizers import load_tokenizer
from tokenizers_vis.cli.batch import decode_files, encode_files
from tokenizers_vis.codec import Codec
from tokenizers_vis.data.transforms import to_uint8
from tokenizers_vis.presets import PRESETS


def make_codec(source: str, ctx: Context, batch_size: int) -> Codec:
    """A codec for a preset (fresh weights, its model identity) or a pretrained model."""
    kwargs = {"device": str(ctx.device), "precision": ctx.precision.name, "batch_size": batch_size}
    if source in PRESETS:
        return Codec(load_tokenizer(source), **kwargs)
    return Codec.from_pretrained(source, limits=ctx.limits, **kwargs)


def _write_images(folder: Path, n: int, size: int) -> None:
    pixels = to_uint8(smooth_images(n, size)).permute(0, 2, 3, 1).numpy()  # (n s s 3) uint8
    for i, image in enumerate(pixels):
        Image.fromarray(np.ascontiguousarray(image)).save(folder / f"{i:05d}.png")


def _checked(summary: Any) -> Any:
    if not summary.ok:
        failure = summary.failures[0]
        raise RuntimeError(f"codec benchmark: {failure.path}: {failure.reason}")
    return summary


def run_codec(ctx: Context, source: str, num_files: int, batch_size: int = 64) -> dict[str, Any]:
    """Encode and decode files/s of `num_files` one-tile images through `tokenizers_vis.codec`."""
    codec = make_codec(source, ctx, batch_size)
    size = codec.tokenizer.image_size
    records = []
    with tempfile.TemporaryDirectory(prefix="vistok-bench-codec-") as tmp:
        src, vtok, png = (Path(tmp) / name for name in ("src", "vtok", "png"))
        src.mkdir()
        _write_images(src, num_files, size)
        last: dict[str, Any] = {}  # each op's latest Summary, for its byte counts
        runs = {
            "encode": lambda: encode_files(codec, [str(src)], str(vtok), overwrite=True),
            "decode": lambda: decode_files(codec, [str(vtok)], str(png), overwrite=True),
        }
        for op, run in runs.items():

            def call(op: str = op, run: Any = run) -> None:
                last[op] = _checked(run())

            timing = measure(call, ctx.device, ctx.warmup, ctx.repeats)
            summary = last[op]
            seconds = timing["seconds_median"]
            records.append(ctx.stamp({
                "model": source, "op": op, "files": num_files, "image_size": size,
                "batch_size": batch_size, "files_per_s": num_files / seconds,
                "seconds_per_file": seconds / num_files,
                "bytes_in": summary.bytes_in, "bytes_out": summary.bytes_out, "timing": timing,
            }))  # fmt: skip
    return {"records": records}
