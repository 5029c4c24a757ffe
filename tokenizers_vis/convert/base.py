"""The contract every published-model family's converter follows.

A family module (`titok.py`, `one_d_piece.py`, `flextok.py`) registers one `Family`: given the
published tensors in their own key names, it says which of our presets the checkpoint is (from the
tensors' shapes, never from a class name in a file) and maps every tensor to our key names. The
machinery around it (reading files safely, checking every tensor against the model the spec
builds, refusing with a list of what is wrong, writing a pretrained directory atomically) lives
in `convert/api.py` and is the same for every family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from tokenizers_vis.errors import VistokError

__all__ = ["FAMILIES", "ConversionError", "Converted", "Family", "register_family"]


class ConversionError(VistokError):
    """A published checkpoint cannot be converted: the message names the file and what is wrong
    (unmapped, missing or wrongly shaped tensors, a wrong family, an unreadable file)."""

    # A refused conversion is a failed run over valid arguments: exit 1, like the issue asks.
    exit_code = 1


@dataclass
class Converted:
    """A family's answer: the tokenizer spec (`Tokenizer(**spec)`) and the tensors in our names.

    Attributes:
        spec: the full tokenizer spec, e.g. `preset_spec("titok_l32_vq")`.
        state: our state-dict key -> tensor, for every tensor the spec's model holds.
        unmapped: source keys (prefixed by their source name, "model:..." / "vqgan:...") that
            the family did not use; the machinery refuses the conversion when any remain.
        preset: the preset name the checkpoint matched, recorded in the output's `extra`.
    """

    spec: dict[str, Any]
    state: dict[str, Tensor]
    unmapped: list[str] = field(default_factory=list)
    preset: str | None = None


class Family:
    """One published family. Subclasses set `name`, `sources` and implement `convert`.

    `sources` names the files the family reads, the first being the main checkpoint: `("model",)`,
    or `("model", "vqgan")` for the TiTok models that decode through the MaskGIT-VQGAN. Only the
    first is required: `convert` gets the others only when the user gave them, and a family that
    needs one for this checkpoint raises ConversionError naming it.
    """

    name: ClassVar[str]
    sources: ClassVar[tuple[str, ...]] = ("model",)

    def convert(
        self, tensors: dict[str, dict[str, Tensor]], config: dict[str, Any] | None = None
    ) -> Converted:
        """tensors: source name -> {their key: tensor} -> Converted. Raise ConversionError
        when the tensors are not this family's (name the keys that tell).

        `config` is the published `config.json` beside the checkpoint (a hub repository has one),
        parsed as plain JSON, or None. It settles what shapes cannot (the number of attention
        heads); without it a family falls back to the published sizes it knows."""
        raise NotImplementedError


FAMILIES: dict[str, Family] = {}


def register_family(family: type[Family]) -> type[Family]:
    """Class decorator: make `family` reachable as `vistok convert FAMILY ...`."""
    if family.name in FAMILIES:
        raise ValueError(f"conversion family {family.name!r} is registered twice")
    FAMILIES[family.name] = family()
    return family
