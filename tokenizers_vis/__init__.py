"""vistok: discrete 1D variable-length image tokenizers.

Public API (what other generative models plug into):

    import tokenizers_vis as tv
    tok = tv.Tokenizer.from_pretrained("emoji32")          # or a local directory
    tokens = tok.encode(images, num_tokens=16)             # Tokens(ids (b 16 g), lengths)
    images = tok.decode(tokens)                            # (b 3 h w) in [-1, 1]
    tv.list_tokenizers(); tv.create_tokenizer("tiny_cpu_fsq", max_tokens=16)
    tokens = tv.refine_tokens(tok, images, num_tokens=64, steps=30)  # codec use: slower encode,
                                                                     # same bytes, closer image
    tv.convert("titok", "tokenizer_titok_b64.bin", "titok_b64", vqgan="maskgit-vqgan.bin")
    tok = tv.Tokenizer.from_pretrained("owner/name")       # a repository in the local HF cache

Saving and loading: `Tokenizer` is a `PretrainedMixin` (constructor kwargs captured as `.config`,
`save_pretrained` / `from_pretrained`); any model of another package (the GPT in `generation`)
becomes saveable the same way by subclassing it with its own `pretrained_kind` and
`shipped_dir`. `Tokenizer.open_pretrained(name)` resolves a name once into a checked
`PretrainedDir` that loaders and the codec take instead of the name.

Besides this module, the public API is the submodules in `PUBLIC_MODULES` (what `generation`
and other packages may import; everything else is internal and may change):

    tokenizers_vis.hub              PretrainedMixin, PretrainedDir, PretrainedError, list_pretrained
    tokenizers_vis.codec            the .vtok format, Codec, the EntropyModel interface
    tokenizers_vis.data             datasets, webdataset shards, uint8 <-> [-1, 1] transforms
    tokenizers_vis.atomic           atomic_write / atomic_write_with, interruptible
    tokenizers_vis.precision        device and precision choice, autocast
    tokenizers_vis.errors           VistokError, the user-error base class
    tokenizers_vis.limits           Limits / LimitError: what one input may make us spend
    tokenizers_vis.evaluation       evaluate_tokenizer / evaluate_generator
    tokenizers_vis.cli.common       the parser and runner of `vistok` commands (entry points)
    tokenizers_vis.training.cli     VistokCLI / run_cli for LightningCLI-based training commands
    tokenizers_vis.training.export  submodule_state: a submodule's weights from a checkpoint
    tokenizers_vis.benchmark        Context / measure for `vistok bench` sections (entry points)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

PUBLIC_MODULES = (
    "tokenizers_vis",
    "tokenizers_vis.hub",
    "tokenizers_vis.codec",
    "tokenizers_vis.data",
    "tokenizers_vis.atomic",
    "tokenizers_vis.precision",
    "tokenizers_vis.errors",
    "tokenizers_vis.limits",
    "tokenizers_vis.evaluation",
    "tokenizers_vis.cli.common",
    "tokenizers_vis.training.cli",
    "tokenizers_vis.training.export",
    "tokenizers_vis.benchmark",
)

from tokenizers_vis.hub import (  # noqa: E402
    PretrainedDir,
    PretrainedError,
    PretrainedMixin,
    list_pretrained,
)
from tokenizers_vis.presets import PRESETS, preset_spec  # noqa: E402
from tokenizers_vis.refine import refine_tokens  # noqa: E402
from tokenizers_vis.tokenizer import Tokenizer, TokenizerOutput, Tokens  # noqa: E402


def __getattr__(name: str) -> Any:
    """`tokenizers_vis.convert` is imported on first use: the families it registers are needed
    only by conversions, and `import tokenizers_vis` stays as fast as it was."""
    if name == "convert":
        import tokenizers_vis.convert as convert  # the package is callable: convert(...)

        return convert
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_tokenizers() -> list[str]:
    """Names of the tokenizer presets `create_tokenizer` accepts."""
    return sorted(PRESETS)


def create_tokenizer(name: str, **overrides: Any) -> Tokenizer:
    """A freshly initialised tokenizer from preset `name`; nested overrides merge into its spec."""
    return Tokenizer(**preset_spec(name, **overrides))


__all__ = [
    "PUBLIC_MODULES",
    "PretrainedDir",
    "PretrainedError",
    "PretrainedMixin",
    "Tokenizer",
    "TokenizerOutput",
    "Tokens",
    "convert",
    "create_tokenizer",
    "list_pretrained",
    "list_tokenizers",
    "refine_tokens",
    "__version__",
]
