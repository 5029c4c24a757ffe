"""`vistok` commands of the generation package, found through the `vistok.commands` entry points:
`pretokenize`, `gpt` (fit / validate / export) and `sample`. Each module has `main(argv) -> int`."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """A mistake in the command line or its inputs: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr and status 2, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
