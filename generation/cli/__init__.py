"""`vistok` commands of the generation package, found through the `vistok.commands` entry points:
`pretokenize`, `gpt` (fit / validate / export) and `sample`. Each module has `main(argv) -> int`."""

from __future__ import annotations

from tokenizers_vis.cli.common import ArgumentParser
from tokenizers_vis.errors import UsageError  # noqa: F401 (the commands' error, re-exported)

# The one `vistok` parser: usage mistakes give one line on stderr and status 2.
Parser = ArgumentParser
