"""The `vistok` console script: one subcommand group per tool module."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": ("tools.data", "prepare, pack and show data sets"),
    "train": ("tools.train", "train a tokenizer (LightningCLI: fit / validate)"),
    "export": ("tools.export", "turn a training checkpoint into a pretrained directory"),
    "eval": ("tools.eval", "evaluate tokenizers and generators (rFID, PSNR, SSIM, rate)"),
    "demo": ("tools.demo", "the end-to-end demonstration on the bundled data"),
}


def usage() -> str:
    lines = ["usage: vistok <command> [args]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `vistok <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from tokenizers_vis import __version__

        print(f"vistok {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"vistok: error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
