"""Semantic alignment: one sub-codebook's tokens predict a frozen teacher's image features.

Follows FQGAN (Bai et al., "Factorized Visual Tokenization and Generation", arXiv:2411.16681,
2024): the semantic sub-codebook's codes pass through a small head that regresses a pretrained
vision model's features (CLIP / DINO there) with a cosine loss, so that sub-codebook's vocabulary
comes to mean something while the others keep the detail.

What we changed:
  * 1D ordered tokens have no grid to match a feature map against, so the head predicts the
    teacher's global (pooled) image feature from the sub-codebook's codes at the prefix the
    decoder saw (per-sample lengths, a masked mean over positions with a learned position
    embedding): short prefixes have to carry the semantics too.
  * Teachers load offline only: the TF-FID InceptionV3 (`tokenizers_vis.layers.inception`) or a
    timm model whose weights come from a local file. Nothing downloads; a teacher is built from a
    registered name (`TEACHERS`), never from a class named in a file.
  * Targets are centred by a running mean of the teacher features: Inception's pool features are
    non-negative, so raw cosines are all near 1 and a constant prediction would already score
    well. A contrastive (InfoNCE over the batch) loss is the alternative to the cosine.
  * The teacher is frozen (no gradients, always in eval mode) and its features are cached per
    image (keyed by the image's uint8 bytes), so each training image pays for one teacher pass.

The head's loss is an unweighted named term ("semantic/cosine" or "semantic/contrastive"); its
weight lives in the training system.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from tokenizers_vis.data.transforms import to_pixel_scale, to_uint8, to_unit
from tokenizers_vis.quantizers.base import fp32
from tokenizers_vis.quantizers.factorized import sub_dims
from tokenizers_vis.registry import Registry

TEACHERS = Registry("teacher")
AlignmentLoss = Literal["cosine", "contrastive"]


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


class FeatureCache:
    """Teacher features per image, keyed by the image's uint8 bytes (so augmented copies that
    differ in any pixel miss, and identical images hit). Features live on the CPU.

    Args:
        teacher: the frozen teacher (any callable images -> (b f) features).
        max_entries: oldest entries are dropped past this (3,459 emoji x 2048 floats = 28 MB);
            0 caches nothing.
        path: optional safetensors file that keeps the features across runs: read at start when
            it holds features of the same `teacher_key`, rewritten (atomically) as new features
            accumulate. Runs on the same images with the same teacher then skip its passes (an
            InceptionV3 pass over the 3,459 training emoji costs a CPU-thread about 15 minutes).
        teacher_key: what identifies the teacher (its spec); a file of another teacher is
            ignored and then overwritten.
    """

    SAVE_EVERY = 1024  # new entries between rewrites of `path` (and on the first all-hit call)

    def __init__(
        self,
        teacher: Callable[[Tensor], Tensor],
        max_entries: int = 100_000,
        path: str | Path | None = None,
        teacher_key: str = "",
    ) -> None:
        self.teacher = teacher
        self.max_entries = max_entries
        self.store: OrderedDict[bytes, Tensor] = OrderedDict()
        self.hits = self.misses = 0
        self.path = None if path is None else Path(path)
        self.teacher_key, self.unsaved = teacher_key, 0
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            if (f.metadata() or {}).get("teacher") != self.teacher_key:
                return
            keys, features = f.get_tensor("keys"), f.get_tensor("features")  # (n 16), (n f)
        self.store.update((bytes(k.tolist()), v) for k, v in zip(keys, features, strict=True))

    def _save(self) -> None:
        from safetensors.torch import save

        from tokenizers_vis.atomic import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = torch.tensor([list(k) for k in self.store], dtype=torch.uint8)  # (n 16)
        tensors = {"keys": keys, "features": torch.stack(list(self.store.values()))}
        atomic_write(self.path, save(tensors, metadata={"teacher": self.teacher_key}))
        self.unsaved = 0

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        """(b 3 h w) in [-1, 1] -> (b f) float32 on `images.device`, without gradients.

        The teacher runs in fp32 with autocast off: it runs once per image, and its features are
        targets, not something to trade precision for.
        """
        pixels = to_uint8(images.detach().float().cpu())  # (b 3 h w) uint8
        keys = [hashlib.blake2b(p.numpy().tobytes(), digest_size=16).digest() for p in pixels]
        found = {i: self.store[key] for i, key in enumerate(keys) if key in self.store}
        todo = [i for i in range(len(keys)) if i not in found]
        if todo:
            if isinstance(self.teacher, nn.Module):
                self.teacher.to(images.device)
            with fp32(images.device.type):
                fresh = self.teacher(images[todo].detach().float()).float().cpu()  # (m f)
            found |= dict(zip(todo, fresh, strict=True))
            if self.max_entries > 0:
                self.store.update((keys[i], found[i]) for i in todo)
                self.unsaved += len(todo)
                while len(self.store) > self.max_entries:
                    self.store.popitem(last=False)
        if self.path is not None and self.unsaved and (not todo or self.unsaved >= self.SAVE_EVERY):
            self._save()
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        return torch.stack([found[i] for i in range(len(keys))]).to(images.device)


class SemanticAlignment(nn.Module):
    """Head and loss: a sub-codebook's codes predict the teacher's (centred) image features.

    Args:
        in_dim: code dimension of the aligned sub-codebook.
        feature_dim: teacher feature size.
        num_tokens: K, for the learned position embedding.
        width: head width.
        loss: "cosine" (1 - cos, FQGAN's) or "contrastive" (InfoNCE over the batch).
        temperature: InfoNCE temperature.
        momentum: of the running mean that centres the teacher features.
    """

    def __init__(
        self,
        in_dim: int,
        feature_dim: int,
        num_tokens: int,
        width: int = 256,
        loss: AlignmentLoss = "cosine",
        temperature: float = 0.1,
        momentum: float = 0.99,
    ) -> None:
        super().__init__()
        if loss not in ("cosine", "contrastive"):
            raise ValueError(f"loss must be 'cosine' or 'contrastive', got {loss!r}")
        self.loss, self.temperature, self.momentum = loss, temperature, momentum
        self.token_mlp = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width))
        self.pos_embed = nn.Parameter(torch.zeros(num_tokens, width))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, feature_dim))
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        # A float flag, not a bool: weight averaging (EMA) interpolates every buffer.
        self.register_buffer("initialized", torch.zeros(()))

    def predict(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """codes (b n d), lengths (b,) or None -> (b feature_dim) predicted centred features."""
        b, n, _ = codes.shape
        h = self.token_mlp(codes) + self.pos_embed[:n]  # (b n w)
        valid = torch.ones(b, n, dtype=torch.bool, device=codes.device)
        if lengths is not None:
            valid = torch.arange(n, device=codes.device)[None] < lengths[:, None]  # (b n)
        weights = rearrange(valid.to(h.dtype), "b n -> b n 1")
        pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1)  # (b w)
        return self.out(pooled)

    @torch.no_grad()
    def _centre(self, features: Tensor) -> Tensor:
        if self.training:
            batch_mean = features.mean(0)
            if not bool(self.initialized > 0):
                self.feature_mean.copy_(batch_mean)
                self.initialized.fill_(1.0)
            else:
                self.feature_mean.lerp_(batch_mean, 1 - self.momentum)
        return features - self.feature_mean

    def forward(
        self, codes: Tensor, features: Tensor, lengths: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Unweighted alignment term.

        Args:
            codes: (b n d) the aligned sub-codebook's straight-through codes.
            features: (b f) teacher features (detached; no gradient reaches the teacher).
            lengths: (b,) prefix length each sample's decoder saw; None = all n.

        Returns:
            {"semantic/cosine": ()} or {"semantic/contrastive": ()}, float32.
        """
        pred = self.predict(codes, lengths).float()  # (b f)
        target = self._centre(features.detach().float())  # (b f)
        if self.loss == "cosine":
            value = (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
        else:
            logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).t()  # (b b)
            labels = torch.arange(pred.shape[0], device=pred.device)
            value = F.cross_entropy(logits / self.temperature, labels)
        return {f"semantic/{self.loss}": value}


def _teacher_key(spec: dict[str, Any]) -> str:
    """The teacher's spec, plus the size and modification time of a weights file it names (the
    same path holding other weights must not serve the old features)."""
    key = dict(spec)
    weights = spec.get("weights")
    if weights and Path(weights).is_file():
        stat = Path(weights).stat()
        key["weights_stat"] = [stat.st_size, stat.st_mtime_ns]
    return json.dumps(key, sort_keys=True)


def build_alignment(
    spec: dict[str, Any], quantizer: nn.Module, num_tokens: int
) -> tuple[SemanticAlignment, FeatureCache, int]:
    """The head, the cached teacher and the aligned sub-codebook's index from a spec.

    Args:
        spec: `{"codebook": 0, "teacher": {"name": "inception"}, "cache": True, "width": 256,
            "loss": "cosine", "temperature": 0.1}`; every key optional (these are the defaults);
            `"cache_file": PATH` keeps the teacher's features on disk across runs.
        quantizer: the tokenizer's quantizer (its sub-codebooks' code dims size the head).
        num_tokens: K.
    """
    spec = dict(spec)
    codebook = int(spec.pop("codebook", 0))
    teacher_spec = spec.pop("teacher", {"name": "inception"})
    teacher = build_teacher(teacher_spec)
    cache = FeatureCache(
        teacher,
        max_entries=100_000 if spec.pop("cache", True) else 0,
        path=spec.pop("cache_file", None),
        teacher_key=_teacher_key(teacher_spec),
    )
    dims = sub_dims(quantizer)
    if not 0 <= codebook < len(dims):
        raise ValueError(f"semantic codebook {codebook} out of range: {len(dims)} sub-codebooks")
    head = SemanticAlignment(dims[codebook], teacher.num_features, num_tokens, **spec)
    return head, cache, codebook
