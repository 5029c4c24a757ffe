"""`vistok` commands of the generation package, found through the `vistok.commands` entry points:
`pretokenize`, `gpt` (fit / validate / export) and `sample`. Each module has `main(argv) -> int`."""

from __future__ import annotations

from tokenizers_vis.cli.common import ArgumentParser


class UsageError(Exception):
    """A mistake in the command line or its inputs: one line on stderr, exit status 2."""


# The one `vistok` parser: usage mistakes give one line on stderr and status 2.
Parser = ArgumentParser
