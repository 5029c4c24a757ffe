"""Frozen teachers: image-feature models that alignment losses regress or align with.

A teacher maps images (b 3 h w) in [-1, 1] to pooled features (b num_features), frozen (no
gradients, always in eval mode). Teachers load offline only: the TF-FID InceptionV3
(`tokenizers_vis.layers.inception`) or a timm model whose weights come from a local file. Nothing
downloads, and a teacher is built from a registered name (`TEACHERS`), never from a class named
in a file. Used by the semantic alignment (`losses.semantic`) and REPA (`training.system`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokenizers_vis.data.transforms import to_pixel_scale, to_unit
from tokenizers_vis.registry import Registry

TEACHERS = Registry("teacher")


class Teacher(nn.Module):
    """A frozen image-feature model: images (b 3 h w) in [-1, 1] -> (b num_features) float32."""

    num_features: int
    teacher_id: str

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # frozen BatchNorm statistics, whatever the parent does


@TEACHERS.register("inception")
class InceptionTeacher(Teacher):
    """TF-FID InceptionV3 pool features (2048-d), loaded offline.

    Args:
        weights: weights file; None searches the usual local places (`find_inception_weights`).
        resize: side the images are resized to (TF1 bilinear); 299 is the FID view, smaller is
            cheaper (at least 75).
    """

    def __init__(self, weights: str | None = None, resize: int = 299) -> None:
        super().__init__()
        from tokenizers_vis.layers.inception import load_tf_inception

        self.net = load_tf_inception(weights)
        self.resize = resize
        self.num_features = self.net.num_features
        self.teacher_id = f"{self.net.extractor_id}/resize{resize}"
        self.freeze()

    def forward(self, images: Tensor) -> Tensor:
        """(b 3 h w) in [-1, 1] -> (b 2048) float32."""
        pixels = to_pixel_scale(images)  # the uint8 scale the graph expects
        return self.net.forward_features(pixels, ("pool",), self.resize)["pool"].float()


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)  # data only, no code runs
    return state.get("state_dict", state) if isinstance(state, dict) else state


@TEACHERS.register("timm")
class TimmTeacher(Teacher):
    """A timm backbone's pooled features, weights from a local file.

    Args:
        model: timm model name, e.g. "vit_small_patch14_dinov2".
        weights: local `.safetensors` / `.pth` state dict. None keeps the random initialisation,
            which is only good for tests; pretrained weights never download.
        image_size: side the images are resized to (default: the model's input size).
    """

    def __init__(self, model: str, weights: str | None = None, image_size: int | None = None):
        super().__init__()
        import timm

        self.net = timm.create_model(model, pretrained=False, num_classes=0)
        if weights is not None:
            self._load(Path(weights))
        config = timm.data.resolve_data_config({}, model=self.net)
        self.image_size = image_size or int(config["input_size"][-1])
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1), False)
        self.num_features = int(self.net.num_features)
        source = Path(weights).name if weights else "random-init"
        self.teacher_id = f"timm/{model}/{source}/{self.image_size}"
        self.freeze()

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"teacher weights file not found: {path}")
        state = _read_state_dict(path)
        ours = self.net.state_dict()
        classifier = {k for k in state if k not in ours}  # heads dropped by num_classes=0
        missing = sorted(set(ours) - set(state))
        if missing:
            raise ValueError(f"{path}: missing keys {missing[:5]} for this timm model")
        self.net.load_state_dict({k: v for k, v in state.items() if k not in classifier})

    def forward(self, images: Tensor) -> Tensor:
        """(b 3 h w) in [-1, 1] -> (b num_features) float32."""
        x = to_unit(images)  # (b 3 h w) in [0, 1]
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", antialias=True)
        return self.net((x - self.mean) / self.std).float()


def build_teacher(spec: dict[str, Any]) -> Teacher:
    """A registered teacher from `{"name": "inception" | "timm", ...}`."""
    return TEACHERS.build(spec)


def teacher_key(spec: dict[str, Any]) -> str:
    """The teacher's spec, plus the size and modification time of a weights file it names (the
    same path holding other weights must not serve the old features)."""
    key = dict(spec)
    weights = spec.get("weights")
    if weights and Path(weights).is_file():
        stat = Path(weights).stat()
        key["weights_stat"] = [stat.st_size, stat.st_mtime_ns]
    return json.dumps(key, sort_keys=True)
