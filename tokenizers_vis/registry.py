"""A tiny name -> class registry, so specs (YAML, config.json, Python dicts) never name Python
classes.

Weight files and configs only ever carry registered names; a name that is not registered is an error
listing the known ones, never an import of whatever a file says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from tokenizers_vis.spec_check import check_arguments


class Registry:
    """Named builders of one kind of component (quantizer, encoder, decoder, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., nn.Module]] = {}

    def register(self, name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
        def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return add

    def names(self) -> list[str]:
        return sorted(self._builders)

    def get(self, name: str) -> Callable[..., nn.Module]:
        if name not in self._builders:
            known = ", ".join(self.names()) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._builders[name]

    def build(self, spec: Mapping[str, Any], **shared: Any) -> nn.Module:
        """Build from `{"name": ..., **kwargs}`; `shared` adds arguments the parent owns.

        Shared arguments (image size, token count, code dimension) live once in the parent spec, so
        a
        spec cannot disagree with itself.
        """
        if "name" not in spec:
            raise KeyError(f"{self.kind} spec needs a 'name'; known: {', '.join(self.names())}")
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        clash = sorted(set(kwargs) & set(shared))
        if clash:
            raise ValueError(f"{self.kind} spec sets {clash}, which the tokenizer spec owns")
        builder = self.get(spec["name"])
        # A spec from JSON or YAML: each value against the builder's annotation, one clear line.
        check_arguments(builder, kwargs, f"{self.kind} {spec['name']!r}")
        return builder(**kwargs, **shared)


QUANTIZERS = Registry("quantizer")
ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")
TOKEN_DROPS = Registry("token drop")
PIXEL_DECODERS = Registry("pixel decoder")
