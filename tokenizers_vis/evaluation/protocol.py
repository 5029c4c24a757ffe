"""Named evaluation protocols: the preprocessing and metric settings a published table used.

``imagenet256`` is the protocol of ADM (Dhariwal & Nichol 2021) and of the tokenizer / generator
papers that report against its reference batches (LlamaGen, TiTok, MaskGIT-style 1D tokenizers):
every image through ADM's center crop to 256 px (`evaluation.center_crop`), the TF-Inception
graph on the 256 px image (resized to 299 inside, TF1 bilinear), and ADM's suite: FID and KID on
``pool_3``, sFID on ``mixed_6/conv``, Inception Score over 10 consecutive splits of the
classifier's unbiased logits, precision / recall with k = 3 and ADM's float16 distance blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tokenizers_vis.evaluation.center_crop import adm_center_crop
from tokenizers_vis.evaluation.inputs import EvaluationError

__all__ = ["PROTOCOLS", "Protocol", "get_protocol", "folder_images", "image_batches"]


@dataclass(frozen=True)
class Protocol:
    """How images are prepared and scored for one published setting.

    Attributes:
        name: the protocol's name (``--protocol``).
        image_size: the square side images are cropped to.
        preprocessing: one line saying exactly what is done to each file.
        crop: PIL image, size -> (size, size, 3) uint8.
        is_splits: Inception Score splits.
        pr_k: precision / recall neighbourhood.
        pr_half: ADM's float16 distance blocks for precision / recall.
    """

    name: str
    image_size: int
    preprocessing: str
    crop: Callable = adm_center_crop
    is_splits: int = 10
    pr_k: int = 3
    pr_half: bool = True

    def describe(self) -> dict:
        """JSON-able settings, for reports and reference files."""
        return {
            "name": self.name,
            "image_size": self.image_size,
            "preprocessing": self.preprocessing,
            "is_splits": self.is_splits,
            "pr_k": self.pr_k,
            "pr_distances": "float16" if self.pr_half else "float32",
        }


PROTOCOLS = {
    "imagenet256": Protocol(
        "imagenet256",
        256,
        "ADM center_crop_arr: box-halve while the short side >= 512, bicubic so the short side "
        "is 256 (sides rounded half to even), centre 256x256 crop (offsets floor((side-256)/2)); "
        "uint8 into the TF-Inception graph, TF1-bilinear to 299",
    ),
}


def get_protocol(name: str) -> Protocol:
    """The named protocol; an unknown name lists the known ones."""
    if name not in PROTOCOLS:
        raise EvaluationError(f"protocol {name!r} is unknown; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def folder_images(spec: str, num_images: int | None = None) -> tuple[Path, list[Path]]:
    """Every image file of a ``folder:DIR`` spec (or a bare directory), sorted by path.

    Raises:
        EvaluationError: not a folder spec, no such folder, no images, or fewer than asked.
    """
    from tokenizers_vis.data.folder import scan_images

    name, _, path = spec.partition(":")
    root = Path(path if name == "folder" else spec)
    if name != "folder" and not root.is_dir():
        raise EvaluationError(f"data {spec}: a protocol reads every file of folder:DIR")
    if not root.is_dir():
        raise EvaluationError(f"data {spec}: no such folder")
    files = [root / rel for rel in scan_images(root)]
    if not files:
        raise EvaluationError(f"data {spec}: no image files")
    if num_images is not None and len(files) < num_images:
        raise EvaluationError(
            f"data {spec}: {len(files)} images, fewer than the {num_images} asked for"
        )
    return root, files[:num_images]


def _load(path: Path, protocol: Protocol) -> np.ndarray:
    from tokenizers_vis.data.transforms import load_rgb

    return protocol.crop(load_rgb(path), protocol.image_size)  # (s s 3)


def image_batches(
    files: list[Path], protocol: Protocol, batch_size: int, start: int = 0
) -> Iterator[tuple[int, Tensor, list[tuple[str, str]]]]:
    """Batches of cropped images from ``files[start * batch_size:]``, one batch in memory.

    Yields:
        (batch index, (b, 3, s, s) uint8, [(file, reason)] of files that failed to decode).
        A batch is always the same file range, so a resumed run lines up with the first.
    """
    for index in range(start, -(-len(files) // batch_size)):
        arrays, failed = [], []
        for path in files[index * batch_size : (index + 1) * batch_size]:
            try:
                arrays.append(_load(path, protocol))
            except (OSError, ValueError, SyntaxError) as err:  # unreadable / truncated files
                failed.append((str(path), " ".join(str(err).split()) or type(err).__name__))
        side = protocol.image_size
        images = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, side, side, 3)
        yield index, images.permute(0, 3, 1, 2).to(torch.uint8).contiguous(), failed  # (b 3 s s)
