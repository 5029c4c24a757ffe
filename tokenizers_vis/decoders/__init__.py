"""Decoders: import registers them by name."""

from tokenizers_vis.decoders import rectified_flow, vit_1d  # noqa: F401  (registration)
from tokenizers_vis.decoders.base import Decoder, DecoderOutput

__all__ = ["Decoder", "DecoderOutput"]
