"""What one input may make vistok spend, stated once: every file we read (a `.vtok`, a `.vtoks`
container, a pretrained directory, an image) is checked against these limits *before* the work
or the allocation it asks for, so a 35-byte file cannot ask for gigabytes.

The habit is Pillow's `MAX_IMAGE_PIXELS`: generous defaults that no honest input of this toolkit
comes near, each raised explicitly — by the API argument `limits=Limits(...)` (or
`DEFAULT_LIMITS.replace(...)`) and by the command-line flag named in `LIMIT_FLAGS`. A refusal is a
`LimitError`: one line naming the file, the limit, the value and the flag that raises it.

| limit | default | flag | why this size |
|---|---:|---|---|
| `max_pixels` | 178,956,970 | `--max-pixels` | Pillow's refusal size; warn above half |
| `max_json_bytes` | 16 MiB | `--max-config-bytes` | our largest JSON is under 1 MiB |
| `max_json_depth` | 64 | `--max-config-bytes` | our specs nest 4 deep |
| `max_parameters` | 8e9 | `--max-parameters` | 4x FlexTok d28 (2.03e9) |
| `max_tensors` | 100,000 | `--max-parameters` | a 2e9 model has ~2,000 |
| `max_header_bytes` | 100 MB | `--max-parameters` | safetensors' own ceiling |
| `max_work_bytes` | 4 GiB | `--max-memory` | one working tensor |

Every command that loads a model or a user's JSON / weights file takes the flags
(`cli.common.add_limit_flags`): encode, decode, entropy fit, eval tokenizer, export --onnx,
convert, serve (its own `--max-pixels` is the request limit), bench, demo, sample, pretokenize;
`tests/test_limit_flags.py` keeps the list and says why the others (info, data, train, gpt) do not.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

from tokenizers_vis.errors import VistokError

__all__ = [
    "DEFAULT_LIMITS",
    "LIMIT_FLAGS",
    "LimitError",
    "LimitWarning",
    "Limits",
    "check_limit",
]

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """The limits of one call; every field is an upper bound (see the module table).

    Attributes:
        max_pixels: output pixels of one decoded image (width x height).
        warn_pixels: above this, a `LimitWarning` (the image is still made).
        max_json_bytes: size of one JSON file we parse (config.json, an entropy table).
        max_json_depth: nesting depth of that JSON.
        max_parameters: parameters of a model, counted from its spec before allocation.
        max_tensors: tensors in one safetensors file.
        max_header_bytes: the JSON header of one safetensors file.
        max_work_bytes: one working tensor a decoder allocates (a coding group, a tile batch).
    """

    max_pixels: int = 178_956_970
    warn_pixels: int = 89_478_485
    max_json_bytes: int = 16 * MIB
    max_json_depth: int = 64
    max_parameters: int = 8_000_000_000
    max_tensors: int = 100_000
    max_header_bytes: int = 100_000_000
    max_work_bytes: int = 4 * GIB

    def replace(self, **changes: int) -> Limits:
        """A copy with some limits changed (unknown names raise `TypeError`)."""
        return dataclasses.replace(self, **changes)


DEFAULT_LIMITS = Limits()

# The command-line flag that raises each limit (a command passes its value into `Limits`).
LIMIT_FLAGS: dict[str, str] = {
    "max_pixels": "--max-pixels",
    "warn_pixels": "--max-pixels",
    "max_json_bytes": "--max-config-bytes",
    "max_json_depth": "--max-config-bytes",
    "max_parameters": "--max-parameters",
    "max_tensors": "--max-parameters",
    "max_header_bytes": "--max-parameters",
    "max_work_bytes": "--max-memory",
}


class LimitError(VistokError):
    """An input asks for more than a limit allows; nothing was allocated for it."""


class LimitWarning(UserWarning):
    """An input is large enough to be suspicious but under its refusal limit."""


def check_limit(source: object, what: str, value: int, limits: Limits, name: str) -> None:
    """Refuse `value` above `limits.<name>` with one line naming `source` and the flag.

    Args:
        source: the file (path or name) whose content asks for `value`.
        what: what is counted, in words ("output pixels", "config.json nesting depth").
        value: what the input asks for.
        limits: the limits in force.
        name: the `Limits` field that bounds it.
    """
    bound = getattr(limits, name)
    if value > bound:
        flag = LIMIT_FLAGS[name]
        raise LimitError(
            f"{source}: {what} {value:,} exceed the limit of {bound:,} ({name}); "
            f"raise it with {flag} (API: limits=Limits({name}=...)) if the input is trusted"
        )
    if name == "max_pixels" and value > limits.warn_pixels:
        warnings.warn(
            f"{source}: {what} {value:,} above {limits.warn_pixels:,}; may be a decompression bomb",
            LimitWarning,
            stacklevel=2,
        )
