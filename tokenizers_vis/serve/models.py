"""The tokenizers a page serves: shipped ones and `--model` directories, each as a `Codec`.

Requests name a model by its key (a shipped name, or the folder name of a `--model` directory)
and never by a path, so nothing a request says reaches the file system. Decoders are paired
by what they decode, not by name: two tokenizers whose encoder and quantizer are the same (spec
and weights) write the same ids, so either decoder can decode them (the shipped `emoji32_rf` is
a rectified-flow decoder trained on `emoji32`'s frozen tokens; `vistok demo` checks the same by
comparing ids).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenizers_vis import codec, list_pretrained
from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import Limits
from tokenizers_vis.metrics import bits_per_token

__all__ = ["ModelSet", "ServedModel"]


def ids_fingerprint(tok: torch.nn.Module) -> str:
    """SHA-256 of what decides the ids: image size, K, encoder and quantizer specs and tensors."""
    spec = {k: tok.config[k] for k in ("image_size", "max_tokens", "encoder", "quantizer")}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for prefix in ("encoder.", "quantizer."):
        for name, tensor in sorted(tok.state_dict().items()):
            if name.startswith(prefix):
                t = tensor.detach().cpu().contiguous()
                digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class ServedModel:
    """One tokenizer: its codec, what the page shows about it, and a lock (one call at a time)."""

    key: str
    source: str
    codec: codec.Codec
    fingerprint: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokenizer(self) -> Any:
        return self.codec.tokenizer

    @property
    def generative(self) -> bool:
        return bool(getattr(self.tokenizer.decoder, "generative", False))

    @property
    def decoder_kind(self) -> str:
        return "rectified flow" if self.generative else "ViT"

    def describe(self) -> dict[str, Any]:
        tok = self.tokenizer
        decoder = tok.decoder
        return {
            "key": self.key,
            "source": self.source,
            "image_size": tok.image_size,
            "max_tokens": tok.max_tokens,
            "vocab_sizes": list(tok.vocab_sizes),
            "bits_per_token": bits_per_token(tok.vocab_sizes),
            "decoder": self.decoder_kind,
            "generative": self.generative,
            "default_steps": int(getattr(decoder, "num_steps", 0) or 0),
        }


class ModelSet:
    """Every tokenizer of the page, loaded at start (a few seconds), by key.

    Args:
        extra: `--model` values: shipped names or pretrained directories.
        shipped: include every shipped tokenizer (`tokenizers_vis.list_pretrained()`).
        limits: input limits for loading each model (default `limits.DEFAULT_LIMITS`).
    """

    def __init__(
        self,
        extra: list[str] | tuple[str, ...] = (),
        shipped: bool = True,
        limits: Limits | None = None,
    ) -> None:
        sources = list(list_pretrained()) if shipped else []
        sources += [m for m in extra if m not in sources]
        if not sources:
            raise VistokError("no tokenizer to serve: none is shipped and no --model was given")
        self.models: dict[str, ServedModel] = {}
        for source in sources:
            key = source if source in list_pretrained() else Path(source).name or source
            while key in self.models:
                key += "_"
            try:
                c = codec.Codec.from_pretrained(
                    source, device="cpu", precision="fp32", limits=limits
                )
            except ValueError as err:  # PretrainedError: a --model that is not a tokenizer
                raise VistokError(f"--model {source}: {' '.join(str(err).split())}") from None
            self.models[key] = ServedModel(key, str(source), c, ids_fingerprint(c.tokenizer))

    def get(self, key: str) -> ServedModel:
        model = self.models.get(str(key))
        if model is None:
            raise VistokError(f"unknown tokenizer {key!r}; served: {', '.join(self.models)}")
        return model

    def decoders(self, key: str) -> list[ServedModel]:
        """The models whose decoders decode `key`'s ids: itself first, then its pairs."""
        model = self.get(key)
        pairs = [
            m for m in self.models.values() if m.key != key and m.fingerprint == model.fingerprint
        ]
        return [model, *pairs]

    def decoder(self, key: str, decoder: str | None) -> ServedModel:
        """The model that decodes `key`'s ids with the decoder the page picked."""
        choices = self.decoders(key)
        if decoder in (None, "", key):
            return choices[0]
        for m in choices:
            if m.key == decoder:
                return m
        known = ", ".join(m.key for m in choices)
        raise VistokError(f"decoder {decoder!r} does not decode {key!r}'s tokens; it has: {known}")

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for key, model in self.models.items():
            info = model.describe()
            info["decoders"] = [
                {"key": m.key, "kind": m.decoder_kind, "generative": m.generative,
                 "default_steps": m.describe()["default_steps"]}
                for m in self.decoders(key)
            ]  # fmt: skip
            out.append(info)
        return out
