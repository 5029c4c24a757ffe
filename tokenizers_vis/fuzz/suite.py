"""The standard campaign's targets, built once: honest files from small models, then every
reader they go through.

- a random-weight `tiny_cpu_fsq` tokenizer (16-pixel tiles, K = 8): `.vtok` files bit-packed and
  range coded with a static table (and with any other entropy model given, such as a random GPT),
  in the tile and the resize layout, uniform and per-tile k; `.vtoks` containers of them;
- the shipped `emoji32` (real weights, its shipped static table): bit-packed and static files;
- pretrained-directory JSON: the tiny tokenizer's `config.json` (loaded by
  `Codec.from_pretrained`, identity hashing included), its static table's `entropy_static.json`,
  and the `config.json` of any entropy-model directory given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tokenizers_vis import create_tokenizer
from tokenizers_vis.codec import Codec, EncodeOptions, load_entropy_model, static_table
from tokenizers_vis.codec.static_table import StaticTable
from tokenizers_vis.fuzz.targets import Target, container_target, json_file_target, vtok_target
from tokenizers_vis.limits import DEFAULT_LIMITS

__all__ = ["FUZZ_LIMITS", "build_targets"]

# What an input may cost is bounded by the limits in force (`tokenizers_vis.limits`); the defaults
# allow a 179 M-pixel image (0.5 GB) and 4 GiB working tensors, more than one case's budget. The
# campaign runs the codecs under limits scaled to that budget, so "within budget" checks that the
# limits really bound the cost (a file refused only after allocating would still fail the cap).
FUZZ_LIMITS = DEFAULT_LIMITS.replace(
    max_pixels=16_000_000, warn_pixels=16_000_000, max_work_bytes=64 << 20
)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(16, 16), (40, 30), (7, 50), (33, 17)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _encode(codec: Codec, images: list[Image.Image]) -> list[bytes]:
    """Each image in the tile layout at k = K and at per-tile k, and in the resize layout."""
    files = []
    for options in (
        EncodeOptions(),
        EncodeOptions(num_tokens=3, layout="resize"),
        EncodeOptions(target_psnr=12.0),
    ):
        files += [e.data for e in codec.encode_images(images, options)]
    return files


def _static(codec: Codec) -> StaticTable:
    rng = np.random.default_rng(1)
    k = codec.tokenizer.max_tokens
    counts = [rng.integers(0, 50, (k, v)) for v in codec.tokenizer.vocab_sizes]
    return StaticTable(counts, tokenizer_id=codec.identity)


def build_targets(
    work: str | os.PathLike,
    entropy_dirs: dict[str, Path] | None = None,
    shipped: bool = True,
) -> list[Target]:
    """The standard targets, their files under `work`.

    Args:
        work: a scratch folder (pretrained directories and containers are written there).
        entropy_dirs: {name: directory} of entropy models for the tiny tokenizer (a GPT saved
            with `save_pretrained`, say): its files are coded with it and its config fuzzed.
        shipped: include the shipped `emoji32` (real weights; slower cases).
    """
    work = Path(work)
    torch.manual_seed(0)
    tiny_dir = create_tokenizer("tiny_cpu_fsq").save_pretrained(work / "tiny")
    codec = Codec.from_pretrained(tiny_dir, device="cpu", batch_size=16, limits=FUZZ_LIMITS)
    table = _static(codec)
    table.save(tiny_dir)
    images = _images()
    plain = _encode(codec, images)
    targets = [vtok_target("vtok/tiny/bitpack", codec, plain, weight=3)]
    codec.set_entropy(table)
    targets.append(
        vtok_target("vtok/tiny/static", codec_for(tiny_dir, "static"), _encode(codec, images), 2)
    )
    for name, directory in (entropy_dirs or {}).items():
        coded = codec_for(tiny_dir, directory)
        targets.append(vtok_target(f"vtok/tiny/{name}", coded, _encode(coded, images[:2])))
        targets.append(
            json_file_target(
                f"json/{name}", directory, "config.json", load_entropy_model, work / f"j-{name}"
            )
        )
    records = [(f"dir/{i}.png", data) for i, data in enumerate(plain[:6])]
    targets.append(
        container_target("vtoks/tiny", codec_for(tiny_dir, "static"), records, work / "box", 3)
    )
    targets.append(
        json_file_target("json/tokenizer", tiny_dir, "config.json", _load_codec, work / "j-tok")
    )
    targets.append(
        json_file_target(
            "json/static", tiny_dir, "entropy_static.json", static_table.load, work / "j-st"
        )
    )
    if shipped:
        real = Codec.from_pretrained("emoji32", device="cpu", batch_size=16, limits=FUZZ_LIMITS)
        targets.append(vtok_target("vtok/emoji32/bitpack", real, _encode(real, images[:2])))
        real_static = Codec.from_pretrained(
            "emoji32", entropy="static", device="cpu", batch_size=16, limits=FUZZ_LIMITS
        )
        targets.append(
            vtok_target("vtok/emoji32/static", real_static, _encode(real_static, images[:2]))
        )
    return targets


def codec_for(tiny_dir: Path, entropy: Any) -> Codec:
    """A codec of the tiny tokenizer coding with `entropy` ("static" or a directory)."""
    return Codec.from_pretrained(
        tiny_dir, entropy=entropy, device="cpu", batch_size=16, limits=FUZZ_LIMITS
    )


def _load_codec(directory: Path) -> Codec:
    return Codec.from_pretrained(directory, device="cpu", limits=FUZZ_LIMITS)
