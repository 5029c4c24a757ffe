"""Pretrained directories: `config.json` (format version, kind, library version, the spec) +
`model.safetensors`, and `PretrainedMixin`, the one contract every saved model follows.

Loading never unpickles and never builds a class named in a file: the config holds a spec of
registered names, the weights are plain tensors, and loading is strict. A directory is untrusted
input: its files are read only when they are regular files inside it (a symlink out of it, to
`/dev/zero` or a FIFO, is refused; a Hugging Face cache snapshot may link into its repository's
`blobs/`), `config.json` and the weights' header within `tokenizers_vis.limits`, and the spec's
size counted on the meta device before anything is allocated (`spec_check`). A name is resolved and
its files checked once (`open_pretrained` -> `PretrainedDir`); what follows (loading, the codec's
identity hash, files beside the model) takes that object, never the name again.

    class GPT(PretrainedMixin, nn.Module):
        pretrained_kind = "gpt"                       # the config.json key of the spec
        shipped_dir = Path(__file__).parent / "pretrained"
        def __init__(self, vocab_sizes: list[int], width: int = 256): ...
    GPT([4096], width=128).config                     # {"vocab_sizes": [4096], "width": 128}
    GPT.from_pretrained("gpt_emoji"); gpt.save_pretrained("out/")
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from tokenizers_vis.atomic import atomic_write, atomic_write_with
from tokenizers_vis.errors import VistokError
from tokenizers_vis.hub_cache import cached_repo
from tokenizers_vis.limits import DEFAULT_LIMITS, LimitError, Limits
from tokenizers_vis.safe_read import open_regular, read_json
from tokenizers_vis.safetensors_header import read_header
from tokenizers_vis.spec_check import check_arguments, meta_budget

# Any nn.Module whose constructor kwargs are its spec and which keeps them as `.config` (a
# `PretrainedMixin`): the Tokenizer, a GPT in `generation`. This module imports neither.
M = TypeVar("M", bound=nn.Module)

# 2: token_drop sampling "uniform_pow2" names FlexTok's distribution; in version 1 it named the
# even mix now called "uniform_or_pow2" (a spec is upgraded when loaded: `upgrade_spec`; the file
# itself is never rewritten, since a tokenizer's identity hashes its bytes).
FORMAT_VERSION = 2
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHIPPED_DIR = Path(__file__).parent / "pretrained"
# Non-persistent buffers (tables derived from the spec) may add to what the weights file holds.
_SLACK_BYTES = 256 * 2**20
# Modules a spec may build per tensor its weights file holds (a Linear is 1 module for 2 tensors;
# containers, activations and dropouts hold none), plus a floor for tiny models.
_MODULES_PER_TENSOR, _MODULES_FLOOR = 8, 1024


class PretrainedError(VistokError):
    """A pretrained directory is missing, incomplete or from an incompatible format."""


def library_version() -> str:
    from tokenizers_vis import __version__

    return __version__


def list_pretrained(shipped_dir: Path = SHIPPED_DIR) -> list[str]:
    """Names of the pretrained models shipped in `shipped_dir` (default: the tokenizers)."""
    if not shipped_dir.is_dir():
        return []
    return sorted(p.name for p in shipped_dir.iterdir() if (p / CONFIG_NAME).is_file())


def resolve(name_or_dir: str | os.PathLike, shipped_dir: Path = SHIPPED_DIR) -> Path:
    """A local directory wins; otherwise the name of a model shipped in `shipped_dir`.

    Raises:
        PretrainedError: neither, listing the shipped names (the one message for an unknown
            name, whatever the kind of model).
    """
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    shipped = list_pretrained(shipped_dir)
    if str(name_or_dir) in shipped:
        return shipped_dir / str(name_or_dir)
    if cached := cached_repo(str(name_or_dir), (CONFIG_NAME, WEIGHTS_NAME), PretrainedError):
        return cached
    raise PretrainedError(
        f"{name_or_dir!s} is neither a directory nor a shipped model; "
        f"shipped: {', '.join(shipped) or '(none)'}"
    )


@dataclass(frozen=True)
class PretrainedDir:
    """A pretrained directory resolved once and checked: its `config.json` parsed and valid for
    `kind`, both files regular files. Pass it down instead of the name, so nothing resolves or
    reads the name again (loading, hashing its identity, finding files beside it).

    Attributes:
        path: the directory.
        kind: the model kind its config holds ("tokenizer", "gpt").
        config: the whole parsed `config.json`.
        root: the folder its files' symlinks may resolve into (`link_root`); None: `path`.
    """

    path: Path
    kind: str
    config: dict[str, Any]
    root: Path | None = None

    @property
    def within(self) -> Path:
        """Where a file of this directory must resolve to be read (`safe_read.check_inside`)."""
        return self.root if self.root is not None else self.path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_NAME

    @property
    def spec(self) -> dict[str, Any]:
        """The model's constructor kwargs."""
        return self.config[self.kind]

    @property
    def version(self) -> int:
        """The `format_version` the directory was written with."""
        return self.config["format_version"]

    @property
    def extra(self) -> dict[str, Any]:
        """Provenance saved beside the spec (e.g. a GPT's tokenizer), {} when none."""
        extra = self.config.get("extra")
        return extra if isinstance(extra, dict) else {}


def link_root(directory: Path) -> Path:
    """The folder a directory's symlinks may point into: the directory itself, or for a Hugging
    Face cache snapshot (`models--owner--name/snapshots/REV`, whose files link to `../../blobs`)
    that repository's cache folder."""
    real = Path(os.path.realpath(directory))
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        return real.parent.parent
    return real


def check_regular_file(path: Path, within: Path | None = None) -> None:
    """Refuse a missing path, anything but a regular file (a FIFO or device would block or never
    end when read) and, with `within`, a symlink resolving outside that folder."""
    open_regular(path, PretrainedError, within).close()


def _parse_config(
    path: Path, kind: str, limits: Limits = DEFAULT_LIMITS, within: Path | None = None
) -> dict[str, Any]:
    """Parse (bounded, `safe_read.read_json`) and validate a `config.json` holding a `kind`
    spec."""
    config = read_json(path, limits, PretrainedError, within)
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


def open_pretrained(
    source: str | os.PathLike | PretrainedDir,
    kind: str = "tokenizer",
    shipped_dir: Path = SHIPPED_DIR,
    limits: Limits = DEFAULT_LIMITS,
) -> PretrainedDir:
    """Resolve a name or directory once and check its files; a `PretrainedDir` passes through
    (after checking it holds `kind`).

    Raises:
        PretrainedError: unknown name, missing or irregular file, a symlink out of the
            directory, bad config, naming the file.
        LimitError: `config.json` larger or deeper than `limits`.
    """
    if isinstance(source, PretrainedDir):
        if source.kind != kind:
            raise PretrainedError(f"{source.path} holds a {source.kind!r}, not a {kind!r} model")
        return source
    directory = resolve(source, shipped_dir)
    root = link_root(directory)
    config = _parse_config(directory / CONFIG_NAME, kind, limits, root)
    check_regular_file(directory / WEIGHTS_NAME, root)
    return PretrainedDir(directory, kind, config, root)


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


def read_config(
    name_or_dir: str | os.PathLike,
    kind: str = "tokenizer",
    shipped_dir: Path = SHIPPED_DIR,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Parse and validate `config.json` of a pretrained directory (or a shipped model's name)."""
    directory = resolve(name_or_dir, shipped_dir)
    return _parse_config(directory / CONFIG_NAME, kind, limits, link_root(directory))


def read_weights_header(
    path: Path, limits: Limits = DEFAULT_LIMITS, within: Path | None = None
) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, reading no tensor data; the
    header checked first (`safetensors_header.read_header`: size, tensor count, offsets).

    Raises:
        PretrainedError: not a regular file, damaged or inconsistent, naming the file.
        LimitError: header bytes, tensors or parameters above `limits`.
    """
    tensors, _ = read_header(path, limits, PretrainedError, within)
    return {name: t.shape for name, t in tensors.items()}


def _tensor_bytes(model: nn.Module) -> int:
    """Bytes every parameter and buffer of `model` would take (works on the meta device)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def check_spec_against_weights(
    cls: type[nn.Module],
    spec: dict[str, Any],
    config_path: Path,
    weights: Path,
    limits: Limits = DEFAULT_LIMITS,
    within: Path | None = None,
) -> None:
    """Build the spec on the meta device (no memory) and compare it with the weights' header.

    Refuses a spec whose tensors differ from the file's in name or shape, and one whose tensors
    (non-persistent buffers included) would need far more memory than the file holds, before
    anything is allocated; the build itself stops as soon as it passes `limits.max_parameters`,
    those bytes, or a module count the file's tensors cannot account for (`meta_budget`).
    """
    header = read_weights_header(weights, limits, within)
    have = weights.stat().st_size

    def refuse(what: str, count: int) -> PretrainedError:
        if what == "bytes":
            need = f"more than {count / 2**30:.1f} GiB of tensors"
        else:
            need = f"more than {count - 1:,} modules for its {len(header):,} tensors"
        return PretrainedError(
            f"{config_path}: the spec needs {need} but {weights.name} holds "
            f"{have / 2**20:.1f} MiB; refusing to build it"
        )

    bound_bytes = 2 * have + _SLACK_BYTES
    bound_modules = _MODULES_PER_TENSOR * len(header) + _MODULES_FLOOR
    try:
        with meta_budget(config_path, limits, bound_bytes, bound_modules, refuse):
            model = cls(**copy.deepcopy(spec))  # a constructor may change what it is given
    except (PretrainedError, LimitError):
        raise
    except Exception as err:  # any fault of an untrusted spec is that file's fault
        raise PretrainedError(f"{config_path}: invalid spec: {_reason(err)}") from err
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
    need = _tensor_bytes(model)
    if need > bound_bytes:
        raise PretrainedError(
            f"{config_path}: the spec needs {need / 2**30:.1f} GiB of tensors but {weights.name} "
            f"holds {have / 2**20:.1f} MiB; refusing to build it"
        )


def _reason(err: Exception) -> str:
    """An exception as a message: its text, or its class name when it has none."""
    text = str(err).strip("'\"")
    return text if text and not isinstance(err, KeyError | IndexError) else f"{err!r}"


def load_pretrained(
    cls: type[M],
    source: str | os.PathLike | PretrainedDir,
    map_location: str | torch.device = "cpu",
    kind: str = "tokenizer",
    shipped_dir: Path = SHIPPED_DIR,
    limits: Limits = DEFAULT_LIMITS,
) -> M:
    """Check the spec against the weights' header, then build the model and load strictly;
    returned in eval mode.

    Every failure is one `PretrainedError` naming the file at fault, or a `LimitError` naming
    the limit (the config, the header or the spec's size) and the flag that raises it.
    """
    found = open_pretrained(source, kind, shipped_dir, limits)
    weights = found.weights_path
    upgrade = getattr(cls, "upgrade_spec", None)
    spec = upgrade(copy.deepcopy(found.spec), found.version) if upgrade else found.spec
    check_spec_against_weights(cls, spec, found.config_path, weights, limits, found.within)
    try:
        model = cls(**copy.deepcopy(spec))
    except (TypeError, KeyError, ValueError) as err:
        raise PretrainedError(f"{found.config_path}: invalid spec: {err}") from err
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


def _jsonable(value: Any) -> Any:
    """A JSON-shaped deep copy: mappings -> dicts, tuples -> lists, integers (numpy's too) ->
    int, reals -> float, which is what `config.json` holds after a round trip; anything else is
    deep-copied as it is (saving then refuses it, as JSON does)."""
    if isinstance(value, bool | str | None):
        return value
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return copy.deepcopy(value)


def _capturing(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a constructor so that the outermost call records its bound arguments (defaults
    filled in) as `self.config`: init args captured once, as diffusers' `register_to_config`."""
    signature = inspect.signature(init)
    params = list(signature.parameters.values())[1:]
    if any(p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) for p in params):
        raise TypeError(f"{init.__qualname__}: a spec is keyword arguments; no *args")
    typed = {p.name for p in params if p.kind is not p.VAR_KEYWORD}

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        outermost = _own_init(type(self)) is __init__
        if outermost:  # captured before the body runs, which may change what it was given
            bound = signature.bind(self, *args, **kwargs)
            given = {k: v for k, v in list(bound.arguments.items())[1:] if k in typed}
            check_arguments(init, given, type(self).__name__)  # a spec from JSON: types
            bound.apply_defaults()
            spec = dict(bound.arguments)
            del spec[next(iter(signature.parameters))]  # self
            for p in params:
                if p.kind is p.VAR_KEYWORD:
                    spec.update(spec.pop(p.name))
            config = _jsonable(spec)
        init(self, *args, **kwargs)
        if outermost:
            self.config = config

    return __init__


def _own_init(cls: type) -> Callable[..., None]:
    return next(k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__)


class PretrainedMixin:
    """Saving and loading for a model whose constructor's keyword arguments are its spec.

    A subclass's `__init__` is wrapped once, when the class is made: the arguments of the
    outermost call (defaults filled in, JSON-shaped) become `self.config`, which `save_pretrained`
    writes as `config.json[pretrained_kind]` and `from_pretrained` passes back to the
    constructor. A subclass adding arguments gets them captured too; nothing copies kwargs by
    hand.

    Class attributes:
        pretrained_kind: the kind a directory declares ("tokenizer", "gpt"); the key of the spec.
        shipped_dir: where this kind's shipped models live (their names resolve there).
    """

    pretrained_kind: ClassVar[str]
    shipped_dir: ClassVar[Path]
    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _capturing(cls.__dict__["__init__"])

    @classmethod
    def upgrade_spec(cls, spec: dict[str, Any], version: int) -> dict[str, Any]:
        """A spec written at `format_version` `version`, in today's terms (a subclass overrides
        this when a name changed meaning; the default keeps the spec as it is)."""
        return spec

    @classmethod
    def list_pretrained(cls) -> list[str]:
        """Names of this kind's shipped models."""
        return list_pretrained(cls.shipped_dir)

    @classmethod
    def open_pretrained(
        cls, source: str | os.PathLike | PretrainedDir, limits: Limits | None = None
    ) -> PretrainedDir:
        """Resolve a shipped name or a directory once and check its files (`open_pretrained`)."""
        limits = limits or DEFAULT_LIMITS
        return open_pretrained(source, cls.pretrained_kind, cls.shipped_dir, limits)

    @classmethod
    def from_pretrained(
        cls: type[M],
        source: str | os.PathLike | PretrainedDir,
        map_location: str | torch.device = "cpu",
        limits: Limits | None = None,
    ) -> M:
        """Build from a pretrained directory, a shipped name or a `PretrainedDir`, loading the
        weights strictly; returned in eval mode. Raises PretrainedError naming the file, or
        LimitError past `limits` (default `tokenizers_vis.limits.DEFAULT_LIMITS`)."""
        limits = limits or DEFAULT_LIMITS
        kind, shipped = cls.pretrained_kind, cls.shipped_dir
        return load_pretrained(cls, source, map_location, kind, shipped, limits)

    def save_pretrained(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write `model.safetensors` then `config.json`, each atomically; returns the directory.

        `extra` holds provenance (e.g. `{"tokenizer": "emoji32", "global_step": 5000}`).
        """
        return save_pretrained(self, directory, extra, kind=self.pretrained_kind)
