"""What every `vistok` command shares: `run` (user errors -> one line and exit 2), an argument
parser whose mistakes exit with status 2 in one line, and argparse types.

Every command's `main(argv=None)` is `return run(lambda: body(argv), PROG)`: the body parses its
arguments and raises a `VistokError` (the library's own, or `UsageError` for an option) for
anything the user can fix. Nothing here catches `ValueError` or `Exception`: a bug keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tokenizers_vis.errors import VistokError
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ArgumentParser",
    "add_limit_flags",
    "int_list",
    "limits_from_args",
    "non_negative",
    "number",
    "positive",
    "run",
]


class ArgumentParser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr and status 2, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


_KINDS = {int: "an integer", float: "a number"}


def number(kind: type, low: float | None = None, high: float | None = None) -> Callable:
    """An argparse type: `kind` (int or float) within [low, high] (None = unbounded)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = _KINDS.get(kind, kind.__name__)
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
            if low is None:
                raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {text}")
        return value

    return parse


positive = number(int, 1)  # argparse type: an integer >= 1
non_negative = number(int, 0)  # argparse type: an integer >= 0


def int_list(text: str) -> list[int]:
    """argparse type: "1,2,4" -> [1, 2, 4]."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that raise `tokenizers_vis.limits` for one run (see that module's table).

    `--max-config-bytes` raises the JSON size limit (and, when raised, the nesting limit x4);
    `--max-parameters` the model size, and the tensor count and header size in proportion;
    `--max-memory` the MiB of one working tensor.
    """
    taken = {flag for action in parser._actions for flag in action.option_strings}
    # A flag the command has already (added by a helper it shares, or its own `--max-pixels`,
    # as `vistok serve`'s request limit) is kept: one flag, read by `limits_from_args`.
    flags = [
        ("--max-pixels", "N", f"output pixels per image (default {DEFAULT_LIMITS.max_pixels:,})"),
        (
            "--max-config-bytes",
            "N",
            f"size of a JSON file we parse (default {DEFAULT_LIMITS.max_json_bytes:,})",
        ),
        (
            "--max-parameters",
            "N",
            f"parameters of a model, from its spec (default {DEFAULT_LIMITS.max_parameters:,})",
        ),
        (
            "--max-memory",
            "MIB",
            f"MiB of one working tensor (default {DEFAULT_LIMITS.max_work_bytes >> 20:,})",
        ),
    ]
    missing = [flag for flag in flags if flag[0] not in taken]
    if not missing:
        return
    group = parser.add_argument_group("limits (raise only for inputs you trust)")
    for flag, metavar, help_ in missing:
        group.add_argument(flag, type=positive, default=None, metavar=metavar, help=help_)


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The `Limits` of a run from `add_limit_flags`' flags (defaults where a flag is absent)."""
    limits = DEFAULT_LIMITS
    if getattr(args, "max_pixels", None) is not None:
        limits = limits.replace(
            max_pixels=args.max_pixels, warn_pixels=max(limits.warn_pixels, args.max_pixels // 2)
        )
    if getattr(args, "max_config_bytes", None) is not None:
        raised = args.max_config_bytes > DEFAULT_LIMITS.max_json_bytes
        depth = DEFAULT_LIMITS.max_json_depth * (4 if raised else 1)
        limits = limits.replace(max_json_bytes=args.max_config_bytes, max_json_depth=depth)
    if getattr(args, "max_parameters", None) is not None:
        scale = max(1, args.max_parameters // DEFAULT_LIMITS.max_parameters)
        limits = limits.replace(
            max_parameters=args.max_parameters,
            max_tensors=DEFAULT_LIMITS.max_tensors * scale,
            max_header_bytes=DEFAULT_LIMITS.max_header_bytes * scale,
        )
    if getattr(args, "max_memory", None) is not None:
        limits = limits.replace(max_work_bytes=args.max_memory << 20)
    return limits


def run(command: Callable[[], int | None], prog: str, *, writes: bool = False) -> int:
    """Run a command's body; returns the exit status. Every `main(argv)` ends in this.

    - the body's return value (None = 0);
    - argparse's exit (the help, or its own one-line usage error: 2);
    - a `VistokError`: `prog: error: MESSAGE` (one line) on stderr and the error's `exit_code`;
    - Ctrl-C: `prog: interrupted` and 130;
    - `writes=True` (a command that writes files): SIGTERM too stops it cleanly (143; outputs are
      written atomically, so none is left half-written), and an `OSError` of the machine (disk
      full, a folder that cannot be created) is one line and exit 1.
    Anything else is a bug and propagates with its traceback.
    """
    from tokenizers_vis.atomic import Interrupted, interruptible

    left = "; no partial output was left" if writes else ""
    try:
        if not writes:
            return int(command() or 0)
        with interruptible():  # SIGTERM unwinds like Ctrl-C
            return int(command() or 0)
    except SystemExit as exit_:  # argparse printed the help, or its one-line error
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        raise
    except VistokError as err:
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (SIGINT){left}", file=sys.stderr)
        return 130
    except Interrupted as err:
        print(f"{prog}: interrupted ({err}){left}", file=sys.stderr)
        return 128 + err.signum
    except OSError as err:
        if not writes:
            raise
        where = f": {err.filename}" if err.filename else ""
        print(f"{prog}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1
