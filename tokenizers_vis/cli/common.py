"""What every `vistok` command shares: `run` (user errors -> one line and exit 2), an argument
parser whose mistakes exit with status 2 in one line, and argparse types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tokenizers_vis.errors import VistokError


class ArgumentParser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr and status 2, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_list(text: str) -> list[int]:
    """argparse type: "1,2,4" -> [1, 2, 4]."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int_list(text)
    if len(value) != 1 or value[0] < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value[0]


def non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int_list(text)
    if len(value) != 1 or value[0] < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value[0]


def run(command: Callable[[], int | None], prog: str) -> int:
    """Run a command's body: a `VistokError` becomes `prog: error: MESSAGE` on stderr and its exit
    code; the command's own return value (None = 0) otherwise. Every `main(argv)` ends in this."""
    try:
        return int(command() or 0)
    except VistokError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
