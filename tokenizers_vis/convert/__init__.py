"""Published models (TiTok, One-D-Piece, FlexTok ...) converted into vistok pretrained directories.

    import tokenizers_vis as tv
    tv.convert("titok", "tokenizer_titok_b64.bin", "titok_b64", vqgan="maskgit-vqgan.bin")
    tv.convert("flextok", "EPFL-VILAB/flextok_d18_d18_in1k", "flextok_d18")  # from the HF cache

Every module of this package other than the machinery (`api`, `base`, `sources`) is a family
and is imported here, so its `@register_family` runs and `FAMILIES` is complete: adding a family
is adding its file. This package is itself callable, `tokenizers_vis.convert(...)` being
`tokenizers_vis.convert.api.convert(...)`: Python binds a loaded subpackage to its parent's
attribute of the same name, so a plain function `tokenizers_vis.convert` could not coexist with
the package `tokenizers_vis.convert`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types
from typing import Any

from tokenizers_vis.convert.api import convert, get_family
from tokenizers_vis.convert.base import (
    FAMILIES,
    ConversionError,
    Converted,
    Family,
    register_family,
)

__all__ = [
    "FAMILIES",
    "ConversionError",
    "Converted",
    "Family",
    "convert",
    "get_family",
    "register_family",
]

_MACHINERY = {"api", "base", "sources"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _MACHINERY and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")


class _CallablePackage(types.ModuleType):
    """This package, callable as `convert` (see the module docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
