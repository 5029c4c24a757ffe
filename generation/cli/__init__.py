"""`vistok` commands of the generation package, found through the `vistok.commands` entry points:
`pretokenize`, `gpt` (fit / validate / export) and `sample`. Each module has `main(argv) -> int`,
which runs its body through `tokenizers_vis.cli.common.run` like every built-in command (user
errors: `tokenizers_vis.errors.VistokError`, one line and exit 2)."""
