"""Why a .vtok file cannot be read or decoded: each error's `str` is a one-line reason that a
command lists beside the file's name."""

from __future__ import annotations

from tokenizers_vis.errors import VistokError

__all__ = [
    "CorruptedError",
    "EntropyMismatchError",
    "EntropyModelError",
    "NotVtokError",
    "OptionsError",
    "TruncatedError",
    "UnsupportedError",
    "VtokError",
    "WrongTokenizerError",
]


class OptionsError(VistokError):
    """Encoding options (k, layout, scale, entropy class) or an entropy model that this tokenizer
    cannot honour; nothing was encoded."""


class VtokError(VistokError):
    """A .vtok file cannot be read; `str(err)` is a one-line reason."""


class NotVtokError(VtokError):
    """The bytes do not start with the .vtok magic."""


class TruncatedError(VtokError):
    """The file ends before the header says it should."""


class CorruptedError(VtokError):
    """The checksum does not match, or a header field is impossible."""


class UnsupportedError(VtokError):
    """A newer format version, or a coding / layout this reader does not know."""


class WrongTokenizerError(VtokError):
    """The file was written by another tokenizer than the one asked to decode it."""


class EntropyModelError(VtokError):
    """An entropy-coded file needs an entropy model that was not given (or another one)."""


class EntropyMismatchError(VtokError):
    """Entropy decoding gave ids that fail their checksum: the model's probabilities differ
    from the ones the encoder computed (another machine, device or software build)."""
