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
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from tokenizers_vis.hub import list_pretrained  # noqa: E402
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
