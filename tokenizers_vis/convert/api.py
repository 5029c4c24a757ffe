"""`convert`: a published checkpoint -> an ordinary vistok pretrained directory.

    import tokenizers_vis as tv
    tv.convert("titok", "tokenizer_titok_b64.bin", "titok_b64", vqgan="maskgit-vqgan.bin")
    tok = tv.Tokenizer.from_pretrained("titok_b64")

The same steps for every family (`convert/base.py` is the contract a family follows):

1. read every source file safely (`convert/sources.py`) and the published config.json beside the
   checkpoint (or the one named);
2. the family maps the tensors to our names and says which preset they are;
3. the spec's model is built on the meta device (no memory) and every converted tensor is checked
   against it; unmapped, missing, wrongly shaped and wrongly typed tensors are refused together,
   in one message, before anything is allocated or written;
4. the model is built and loaded strictly, then written as config.json + model.safetensors into
   a hidden directory beside DST, renamed into place when complete: a reader sees no directory
   or a whole one. `extra.converted_from` records the family, the matched preset and each source
   file's name and SHA-256.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tokenizers_vis.atomic import blame_destination, temp_path
from tokenizers_vis.convert.base import FAMILIES, ConversionError, Converted, Family
from tokenizers_vis.convert.sources import (
    CONFIG_NAME,
    Source,
    read_config,
    read_source,
    read_tensors,
)
from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits
from tokenizers_vis.safe_read import read_json
from tokenizers_vis.tokenizer import Tokenizer

__all__ = ["convert", "get_family"]

# Option names of the sources beyond the main checkpoint, as the CLI spells them.
_OPTION = {"vqgan": "--vqgan / vqgan="}
# How many names of each kind of fault one message lists (the count says how many there are).
_LIST = 8


def get_family(name: str) -> Family:
    """The registered family `name`; an unknown name lists the known ones."""
    if name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES)) or "(none)"
        raise ConversionError(f"unknown conversion family {name!r}; known: {known}")
    return FAMILIES[name]


def convert(
    family: str,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    vqgan: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    overwrite: bool = False,
    limits: Limits | None = None,
) -> Path:
    """Convert a published checkpoint of `family` into the pretrained directory `dst`.

    Args:
        family: a registered family ("titok", "one_d_piece", "flextok", ...).
        src: the checkpoint file (.safetensors, or a PyTorch state dict .bin / .pt / .pth), a
            directory holding one (a downloaded hub repository), or a repository id
            "owner/name" found in the local Hugging Face cache.
        dst: the pretrained directory to write (config.json + model.safetensors).
        vqgan: the MaskGIT-VQGAN weights, for the families that decode through it.
        config: the published config.json; default: the one beside the checkpoint, if any.
        overwrite: replace `dst` when it is a previous pretrained directory.
        limits: bound the published config.json and the safetensors headers (default
            `DEFAULT_LIMITS`).

    Returns:
        `dst`, complete.

    Raises:
        ConversionError: any fault of the inputs, naming the file and what is wrong; nothing
            is written then.
        LimitError: a config or a safetensors header above `limits`.
    """
    limits = limits or DEFAULT_LIMITS
    fam = get_family(family)
    dst = Path(dst).expanduser()
    check_destination(dst, overwrite)  # before reading gigabytes
    sources = _sources(fam, src, vqgan)
    config_path = _config_path(sources["model"], config)
    published = read_config(config_path, limits=limits)
    tensors = {name: read_tensors(s.path, f"{name} file", limits) for name, s in sources.items()}
    names = ", ".join(str(s.path) for s in sources.values())
    try:
        converted = fam.convert(tensors, published)
    except ConversionError as err:
        raise ConversionError(_naming(str(err), names)) from None
    except (KeyError, IndexError, RuntimeError, ValueError) as err:
        # A family reads the user's tensors: one it did not expect (a key missing where the
        # layout said it would be, a tensor of another rank) is a fault of the input, so it
        # gets the input's one-line message, not a traceback.
        raise ConversionError(
            f"{names}: family {fam.name!r} cannot read these tensors "
            f"({type(err).__name__}: {err}); are they a {fam.name} checkpoint?"
        ) from None
    check_converted(converted, fam.name, names)
    model = _load(converted, names)
    extra = {"converted_from": _provenance(fam, converted, sources, config_path)}
    return _publish(model, dst, extra, overwrite)


def _sources(fam: Family, src: str | os.PathLike, vqgan: str | os.PathLike | None) -> dict:
    """{source name: Source} for the main checkpoint and each further file given.

    Further sources are optional here: whether one is needed depends on the checkpoint (a TiTok
    checkpoint with the VQGAN inside needs no VQGAN file), so the family says so itself.
    """
    given = {"model": src, "vqgan": vqgan}
    for name, value in given.items():
        if value is not None and name not in fam.sources:
            raise ConversionError(
                f"family {fam.name!r} reads no {name} file (it reads: {', '.join(fam.sources)}); "
                f"drop {_OPTION.get(name, name)}"
            )
    return {
        name: read_source(given[name], f"{name} file")
        for name in fam.sources
        if given.get(name) is not None
    }


def _config_path(model: Source, config: str | os.PathLike | None) -> Path | None:
    if config is not None:
        return Path(config).expanduser()
    beside = model.path.parent / CONFIG_NAME
    return beside if beside.is_file() else None


def _naming(message: str, names: str) -> str:
    """A family's message, prefixed by the files it is about unless it names them already."""
    return message if any(n in message for n in names.split(", ")) else f"{names}: {message}"


def _listed(title: str, items: list[str]) -> str:
    more = f" (+{len(items) - _LIST} more)" if len(items) > _LIST else ""
    return f"{len(items)} {title}: {', '.join(items[:_LIST])}{more}"


def check_converted(converted: Converted, family: str, names: str) -> None:
    """Compare the converted tensors with what the spec's model holds, built on the meta device.

    Raises:
        ConversionError: one message listing unmapped source tensors, model tensors nothing
            maps to, unexpected names, and tensors whose shape or kind (floating vs integer)
            differs.
    """
    try:
        with torch.device("meta"):
            model = Tokenizer(**converted.spec)
    except (TypeError, KeyError, ValueError) as err:
        raise ConversionError(f"{names}: family {family!r} gave an invalid spec: {err}") from None
    expected = model.state_dict()
    state = converted.state
    problems = []
    if converted.unmapped:
        problems.append(_listed("unmapped source tensors", sorted(converted.unmapped)))
    if missing := sorted(set(expected) - set(state)):
        problems.append(_listed("missing tensors", missing))
    if unexpected := sorted(set(state) - set(expected)):
        problems.append(_listed("unexpected tensors", unexpected))
    wrong = [
        f"{key} {list(state[key].shape)} != {list(want.shape)}"
        for key, want in expected.items()
        if key in state and tuple(state[key].shape) != tuple(want.shape)
    ]
    if wrong:
        problems.append(_listed("wrongly shaped tensors (file != model)", wrong))
    kind = [
        f"{key} {state[key].dtype} for {want.dtype}"
        for key, want in expected.items()
        if key in state and _is_float(state[key]) != _is_float(want)
    ]
    if kind:
        problems.append(_listed("wrongly typed tensors", kind))
    if problems:
        preset = f" as {converted.preset}" if converted.preset else ""
        raise ConversionError(
            f"{names} cannot be converted by family {family!r}{preset}: " + "; ".join(problems)
        )


def _is_float(t: Tensor) -> bool:
    return t.is_floating_point() or t.is_complex()


def _load(converted: Converted, names: str) -> Tokenizer:
    """Build the model and load the checked tensors strictly (cast to the model's dtypes)."""
    model = Tokenizer(**converted.spec)
    try:
        model.load_state_dict(converted.state, strict=True)
    except RuntimeError as err:  # checked above; a family handing over a non-contiguous view ...
        raise ConversionError(f"{names}: the converted tensors do not load: {err}") from None
    return model.eval()


def _provenance(
    fam: Family, converted: Converted, sources: dict[str, Source], config: Path | None
) -> dict[str, Any]:
    files = {name: source.describe() for name, source in sources.items()}
    if config is not None:
        files["config"] = Source(config).describe()
    return {"family": fam.name, "preset": converted.preset, "sources": files}


def _is_replaceable(path: Path) -> bool:
    """An empty directory, or a vistok pretrained directory (a previous conversion)."""
    if not any(path.iterdir()):
        return True
    try:
        config = read_json(path / CONFIG_NAME, error=OSError)
    except (OSError, VistokError):
        return False
    return isinstance(config, dict) and config.get("library") == "vistok"


def check_destination(dst: Path, overwrite: bool) -> None:
    """Refuse a DST that exists and is not an empty directory, unless `overwrite` is given and
    it is a previous pretrained directory (never any other folder: --overwrite on a wrong path
    must not delete the user's files)."""
    if not os.path.lexists(dst):
        return
    if not dst.is_dir() or dst.is_symlink():
        raise ConversionError(f"{dst} exists and is not a directory")
    if not any(dst.iterdir()):
        return
    if not overwrite:
        raise ConversionError(f"{dst} exists and is not empty (pass --overwrite to replace it)")
    if not _is_replaceable(dst):
        raise ConversionError(
            f"{dst} exists and is not a vistok pretrained directory; refusing to replace it"
        )


def _publish(model: Tokenizer, dst: Path, extra: dict[str, Any], overwrite: bool) -> Path:
    """Write into a hidden directory beside `dst`, then rename it into place; a previous
    directory is swapped out and deleted only once the new one is in place."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    try:
        with blame_destination(tmp, dst):  # an error names DST, not the hidden folder
            tmp.mkdir()
            model.save_pretrained(tmp, extra=extra)
            check_destination(dst, overwrite)  # again: it may have appeared while we worked
            if not os.path.lexists(dst):
                os.rename(tmp, dst)
                return dst
            old = temp_path(dst)
            os.rename(dst, old)
            try:
                os.rename(tmp, dst)
            except BaseException:
                os.rename(old, dst)
                raise
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; a failure's leftovers
    return dst
