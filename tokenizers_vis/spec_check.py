"""A spec from a file is checked before it is built: each value against the type its constructor
declares, and the model's size counted on the meta device while it is being built.

Types: a spec is JSON, so `"image_size": "32"` or `"levels": [1e9, 1e9]` reach constructors that
then fail deep inside with messages that name nothing ("not all arguments converted during
string formatting"). `check_arguments` compares every argument given with its annotation (int,
float, bool, str, Literal, list/tuple/dict of those, unions) and says which one is wrong;
annotations it cannot evaluate, and types it does not know (a Tensor, a class), pass unchecked.
`Registry.build` and every `PretrainedMixin` constructor call it.

Size: `meta_budget` counts every parameter and buffer as modules register them, on the meta
device (nothing allocated), and stops the constructor as soon as the count passes a bound —
`limits.max_parameters`, the bytes the weights file can account for, and a module count — so a
spec asking for a million decoder blocks is refused after the few hundred that already exceed
its weights file, in milliseconds, instead of building all of them (30 s and 2 GB even on meta).
"""

from __future__ import annotations

import functools
import numbers
import threading
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch
from torch.nn.modules import module as nn_module

from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import Limits, check_limit

__all__ = ["MetaBudget", "SpecTypeError", "check_arguments", "meta_budget"]


class SpecTypeError(VistokError, TypeError, ValueError):
    """A spec value of the wrong type or outside its choices (also a TypeError and, for the
    choices of a Literal, the ValueError constructors raised for them before)."""


@functools.lru_cache(maxsize=512)
def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    target = fn.__init__ if isinstance(fn, type) else fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation this module's namespace cannot evaluate: not checked
        return {}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON-shaped `value` fits annotation `hint` (unknown hints fit)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        item = args[0] if args and (origin is not tuple or args[-1] is Ellipsis) else Any
        return all(_fits(v, item) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping)
    return True  # a Tensor, a class, a callable: not something a JSON spec holds


def _name(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if typing.get_origin(hint) is None else None
    return text or str(hint).replace("typing.", "")


def check_arguments(fn: Callable[..., Any], arguments: Mapping[str, Any], where: str) -> None:
    """Refuse an argument whose value does not fit `fn`'s annotation for it.

    Args:
        fn: a class (its `__init__`) or a function.
        arguments: the keyword arguments about to be passed.
        where: what they are, for the message ("decoder 'vit_1d'").

    Raises:
        SpecTypeError: one line naming the argument, the type wanted and the value given.
    """
    hints = _hints(fn)
    for key, value in arguments.items():
        hint = hints.get(key)
        if hint is not None and not _fits(value, hint):
            raise SpecTypeError(
                f"{where}: {key} must be {_name(hint)}, got {value!r} ({type(value).__name__})"
            )


@dataclass
class MetaBudget:
    """What a constructor registered so far, against its bounds (see `meta_budget`)."""

    source: object
    limits: Limits
    max_bytes: int | None
    max_modules: int | None
    refuse: Callable[[str, int], Exception]
    parameters: int = 0
    bytes: int = 0
    modules: int = 0

    def add(self, tensor: torch.Tensor | None, parameter: bool) -> None:
        if tensor is None:
            return
        self.bytes += tensor.numel() * tensor.element_size()
        if self.max_bytes is not None and self.bytes > self.max_bytes:  # the file's own bound
            raise self.refuse("bytes", self.bytes)
        if parameter:
            self.parameters += tensor.numel()
            check_limit(self.source, "parameters", self.parameters, self.limits, "max_parameters")

    def add_module(self) -> None:
        self.modules += 1
        if self.max_modules is not None and self.modules > self.max_modules:
            raise self.refuse("modules", self.modules)


@contextmanager
def meta_budget(
    source: object,
    limits: Limits,
    max_bytes: int | None = None,
    max_modules: int | None = None,
    refuse: Callable[[str, int], Exception] | None = None,
) -> Iterator[MetaBudget]:
    """Count what modules built in this thread register, on the meta device, refusing early.

    Args:
        source: the file the spec came from (named in a refusal).
        limits: `max_parameters` bounds the parameter count (a `LimitError`).
        max_bytes: bound on parameter + buffer bytes.
        max_modules: bound on modules registered (a spec making millions of small modules).
        refuse: `refuse("bytes" | "modules", count)` builds the error raised past either bound
            (the caller's class and words).

    Yields:
        The running `MetaBudget` (its counts are final when the block ends).
    """
    if refuse is None:

        def refuse(what: str, count: int) -> Exception:
            return VistokError(f"{source}: the spec builds more than {count - 1:,} {what}")

    budget = MetaBudget(source, limits, max_bytes, max_modules, refuse)
    thread = threading.get_ident()

    def on_parameter(_module: Any, _name: str, tensor: Any) -> None:
        if threading.get_ident() == thread:
            budget.add(tensor, parameter=True)

    def on_buffer(_module: Any, _name: str, tensor: Any) -> None:
        if threading.get_ident() == thread:
            budget.add(tensor, parameter=False)

    def on_module(_module: Any, _name: str, _child: Any) -> None:
        if threading.get_ident() == thread:
            budget.add_module()

    handles = [
        nn_module.register_module_parameter_registration_hook(on_parameter),
        nn_module.register_module_buffer_registration_hook(on_buffer),
        nn_module.register_module_module_registration_hook(on_module),
    ]
    try:
        with torch.device("meta"):
            yield budget
    finally:
        for handle in handles:
            handle.remove()
