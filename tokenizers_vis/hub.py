"""Pretrained directories: `config.json` (format version, library version, the spec) +
`model.safetensors`.

Loading never unpickles and never builds a class named in a file: the config holds a spec of
registered names, the weights are plain tensors, and loading is strict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from tokenizers_vis.atomic import atomic_write, atomic_write_with
from tokenizers_vis.hub_cache import cached_repo

# Any nn.Module whose constructor kwargs are its spec and which keeps them as `.config`: the
# Tokenizer here, a GPT in `generation`. This module imports neither, so nothing circles.
M = TypeVar("M", bound=nn.Module)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHIPPED_DIR = Path(__file__).parent / "pretrained"
# Non-persistent buffers (tables derived from the spec) may add to what the weights file holds.
_SLACK_BYTES = 256 * 2**20


class PretrainedError(ValueError):
    """A pretrained directory is missing, incomplete or from an incompatible format."""


def library_version() -> str:
    from tokenizers_vis import __version__

    return __version__


def list_pretrained() -> list[str]:
    """Names of the pretrained tokenizers shipped inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def resolve(name_or_dir: str | Path) -> Path:
    """A local directory wins; otherwise a shipped model's name; otherwise a repository id
    "owner/name" found in the local Hugging Face cache (`hub_cache`; never downloaded)."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    shipped = SHIPPED_DIR / str(name_or_dir)
    if str(name_or_dir) in list_pretrained():
        return shipped
    if cached := cached_repo(str(name_or_dir), (CONFIG_NAME, WEIGHTS_NAME), PretrainedError):
        return cached
    known = ", ".join(list_pretrained()) or "(none)"
    raise PretrainedError(
        f"{name_or_dir!s} is neither a directory nor a shipped model; shipped: {known}"
    )


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    extra: dict[str, Any] | None = None,
    kind: str = "tokenizer",
) -> Path:
    """Write `config.json` and `model.safetensors`, each atomically; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "library": "vistok",
        "library_version": library_version(),
        kind: model.config,
        **({"extra": extra} if extra else {}),
    }
    atomic_write_with(directory / WEIGHTS_NAME, lambda p: save_model(model, p, {"format": "pt"}))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / CONFIG_NAME, text.encode())
    return directory


def read_config(directory: str | Path, kind: str = "tokenizer") -> dict[str, Any]:
    """Parse and validate `config.json` of a pretrained directory."""
    path = resolve(directory) / CONFIG_NAME
    if not path.is_file():
        raise PretrainedError(f"{path} is missing")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PretrainedError(f"{path} is not valid JSON: {err}") from err
    version = config.get("format_version") if isinstance(config, dict) else None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PretrainedError(
            f"{path}: format_version {version!r} is not supported "
            f"(this vistok reads <= {FORMAT_VERSION})"
        )
    if not isinstance(config.get(kind), dict):
        other = config.get("kind") or ("tokenizer" if "tokenizer" in config else None)
        held = f" (it holds a {other!r} model)" if other and other != kind else ""
        raise PretrainedError(f"{path} has no {kind!r} spec{held}: not a {kind} directory")
    return config


def read_weights_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, reading no tensor data."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except Exception as err:  # SafetensorError, OSError, a header that is not JSON ...
        raise PretrainedError(f"{path} is not a readable safetensors file: {err}") from None


def _tensor_bytes(model: nn.Module) -> int:
    """Bytes every parameter and buffer of `model` would take (works on the meta device)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def check_spec_against_weights(
    cls: type[nn.Module], spec: dict[str, Any], config_path: Path, weights: Path
) -> None:
    """Build the spec on the meta device (no memory) and compare it with the weights' header.

    Refuses a spec whose tensors differ from the file's in name or shape, and one whose tensors
    (non-persistent buffers included) would need far more memory than the file holds, before
    anything is allocated.
    """
    header = read_weights_header(weights)
    try:
        with torch.device("meta"):
            model = cls(**spec)
    except (TypeError, KeyError, ValueError, RuntimeError) as err:
        raise PretrainedError(f"{config_path}: invalid spec: {err}") from err
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise PretrainedError(
            f"{weights} does not match {config_path.name}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    wrong = [(n, header[n], shape) for n, shape in expected.items() if header[n] != shape]
    if wrong:
        name, got, want = wrong[0]
        raise PretrainedError(
            f"{weights} does not match {config_path.name}: {len(wrong)} tensors differ in "
            f"shape, e.g. {name}: file {list(got)}, config {list(want)}"
        )
    need, have = _tensor_bytes(model), weights.stat().st_size
    if need > 2 * have + _SLACK_BYTES:
        raise PretrainedError(
            f"{config_path}: the spec needs {need / 2**30:.1f} GiB of tensors but {weights.name} "
            f"holds {have / 2**20:.1f} MiB; refusing to build it"
        )


def load_pretrained(
    cls: type[M],
    name_or_dir: str | Path,
    map_location: str | torch.device = "cpu",
    kind: str = "tokenizer",
) -> M:
    """Check the spec against the weights' header, then build the tokenizer and load strictly.

    Every failure is one `PretrainedError` naming the file at fault.
    """
    directory = resolve(name_or_dir)
    spec = read_config(directory, kind)[kind]
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise PretrainedError(f"{weights} is missing")
    check_spec_against_weights(cls, spec, directory / CONFIG_NAME, weights)
    try:
        model = cls(**spec)
    except (TypeError, KeyError, ValueError) as err:
        raise PretrainedError(f"{directory / CONFIG_NAME}: invalid spec: {err}") from err
    try:
        missing, unexpected = load_model(model, weights, strict=False, device=str(map_location))
    except Exception as err:  # shape mismatches, damaged tensor data (SafetensorError)
        raise PretrainedError(f"{weights} could not be loaded: {err}") from err
    if missing or unexpected:
        raise PretrainedError(
            f"{weights} does not match its config: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return model.to(map_location).eval()
