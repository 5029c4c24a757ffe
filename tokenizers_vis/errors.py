"""The one base class of user errors: a mistake in what the user gave us (a file, a name, an
option), as opposed to a bug in vistok.

Every command runs through `tokenizers_vis.cli.common.run`, which turns a `VistokError` into one
line on stderr and the error's `exit_code` (2 unless a subclass says otherwise; the page of `vistok
serve` shows the same line). Anything else is a bug and keeps its traceback. Library callers catch
`VistokError` (or `ValueError`, which it extends so code written before it still works).

The library's own errors subclass it where they are defined, named for what is wrong with the
input (`PretrainedError`, `VtokError`, `EvaluationError`, `BadImageError`, ...); `UsageError` is
the commands' own: options that cannot go together or a value a command cannot use.
"""

from __future__ import annotations

__all__ = ["UsageError", "VistokError"]


class VistokError(ValueError):
    """A user error; `str(err)` is a one-line message that names the input at fault."""

    exit_code: int = 2


class UsageError(VistokError):
    """A mistake in how a command was called: an option's value, or options that cannot go
    together. Raised by the commands (`tokenizers_vis.cli`, plug-ins), never by the library."""
