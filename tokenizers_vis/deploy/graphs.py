"""The two graphs a deployment runs, as modules `torch.onnx.export` can trace.

    EncoderGraph  images (b 3 h w) in [-1, 1]           -> ids (b K g) int64, all K tokens
    DecoderGraph  ids (b K g) int64, num_tokens (b,)    -> images (b 3 h w) in [-1, 1]

Every k shares one decoder graph: `num_tokens` is an input and goes through the tokenizer's own
token drop (nested-dropout mask token or tail-drop key mask), so a batch may mix prefix lengths,
exactly as `Tokenizer.decode` does. The decoder always takes K positions; a runner pads shorter
prefixes (the padding is replaced or hidden by the token drop, so its value does not matter).

Only deterministic decoders have a graph: a generative decoder (`decoder.generative`; rectified
flow) samples in a loop of guided velocity steps through a diffusers scheduler (and, in latent
space, a VAE), which is a program around a network rather than one network, so it is refused by
`check_exportable`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import Tensor, nn

from tokenizers_vis.quantizers.base import Quantizer
from tokenizers_vis.tokenizer import Tokenizer


class EncoderGraph(nn.Module):
    """images (b 3 h w) in [-1, 1] -> ids (b K g) int64 (a prefix of k tokens is a slice)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, images: Tensor) -> Tensor:
        t = self.tokenizer
        return t.quantizer(t.encoder(images)).ids  # (b K g)


class DecoderGraph(nn.Module):
    """ids (b K g) int64 and num_tokens (b,) int64 in 1..K -> images (b 3 h w) in [-1, 1]."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, ids: Tensor, num_tokens: Tensor) -> Tensor:
        codes = self.tokenizer.quantizer.ids_to_codes(ids)  # (b K d)
        return self.tokenizer.decode_codes(codes, num_tokens)  # (b 3 h w)


def check_exportable(tokenizer: Tokenizer) -> None:
    """Raise ValueError for a tokenizer whose decoder has no single-graph form."""
    if tokenizer.decoder.generative:
        name = tokenizer.config["decoder"]["name"]
        raise ValueError(
            f"generative decoders ({name}) are not exported to ONNX: decoding is a sampling loop "
            "(guided velocity steps through a diffusers scheduler), not one graph; decode with "
            "PyTorch (Tokenizer.decode), or export a tokenizer with the deterministic vit_1d "
            "decoder"
        )


@contextlib.contextmanager
def unchecked_ids(tokenizer: Tokenizer) -> Iterator[None]:
    """Within the block, the quantizers skip `check_ids`.

    The check branches on tensor values (`bool((ids < 0).any())`), which torch.export cannot
    trace; a graph has no way to raise anyway, so the runner checks ids before feeding them.
    Instance attributes shadow the method and are removed afterwards; the class is untouched.
    """
    quantizers = [m for m in tokenizer.modules() if isinstance(m, Quantizer)]
    for quantizer in quantizers:
        quantizer.check_ids = _no_check
    try:
        yield
    finally:
        for quantizer in quantizers:
            del quantizer.check_ids


def _no_check(ids: Tensor) -> None:
    return None
