"""The `vistok` console script: one module a command, each with `main(argv=None) -> int`.

Built-in commands live in `tokenizers_vis.cli`. Other packages add commands through the
`vistok.commands` entry-point group (name = "package.module", whose `main(argv)` runs the command
and whose docstring's first line is the help): `generation` adds `sample` and `pretokenize` this
way, so the tokenizer package never imports the generator.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from tokenizers_vis.cli.common import run
from tokenizers_vis.errors import UsageError

ENTRY_POINT_GROUP = "vistok.commands"
COMMANDS = {
    "encode": ("tokenizers_vis.cli.encode", "encode images into .vtok token files"),
    "decode": ("tokenizers_vis.cli.decode", "decode .vtok token files into images"),
    "info": ("tokenizers_vis.cli.info", "print a .vtok file's header, size and bits per token"),
    "entropy": ("tokenizers_vis.cli.entropy", "fit a tokenizer's static entropy-coding table"),
    "data": ("tokenizers_vis.cli.data", "prepare, pack and show data sets"),
    "train": ("tokenizers_vis.cli.train", "train a tokenizer (LightningCLI: fit / validate)"),
    "convert": (
        "tokenizers_vis.cli.convert",
        "published checkpoint (TiTok, FlexTok ...) -> pretrained dir",
    ),
    "export": ("tokenizers_vis.cli.export", "checkpoint -> pretrained dir; tokenizer -> ONNX"),
    "eval": ("tokenizers_vis.cli.eval", "evaluate tokenizers and generators (rFID, PSNR, rate)"),
    "demo": ("tokenizers_vis.cli.demo", "the end-to-end demonstration on the bundled data"),
    "bench": ("tokenizers_vis.cli.bench", "benchmark speed, FLOP fraction and memory here"),
    "serve": ("tokenizers_vis.cli.serve", "a local page to see what k tokens keep"),
}


def _summary(module: str) -> str:
    """First line of a module's docstring, read from its source without importing it (importing
    a plug-in would import torch and everything else just to print the help)."""
    try:
        spec = importlib.util.find_spec(module)
        source = Path(spec.origin).read_text() if spec and spec.origin else ""
        doc = ast.get_docstring(ast.parse(source)) or ""
    except (ImportError, OSError, SyntaxError, ValueError):
        doc = ""
    return doc.strip().splitlines()[0] if doc.strip() else f"(from {module.split('.')[0]})"


def commands() -> dict[str, tuple[str, str]]:
    """Built-in commands plus those of installed plug-ins (a built-in name cannot be taken)."""
    found = dict(COMMANDS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            found[ep.name] = (ep.value, _summary(ep.value))
    return found


def usage(table: dict[str, tuple[str, str]]) -> str:
    lines = ["usage: vistok <command> [args]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in table.items()]
    lines += ["", "Run `vistok <command> --help` for a command's options."]
    return "\n".join(lines)


def dispatch(argv: list[str]) -> int:
    """Run the command `argv[0]` names with the rest of `argv`."""
    table = commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(table))
        return 0
    if argv[0] in ("-V", "--version"):
        from tokenizers_vis import __version__

        print(f"vistok {__version__}")
        return 0
    if argv[0] not in table:
        raise UsageError(
            f"unknown command {argv[0]!r}; commands: {', '.join(table)} (see vistok --help)"
        )
    module = importlib.import_module(table[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


def main(argv: list[str] | None = None) -> int:
    """Run `vistok ...`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(lambda: dispatch(argv), "vistok")


if __name__ == "__main__":
    raise SystemExit(main())
