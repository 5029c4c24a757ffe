"""Decoders: import registers them by name."""

from tokenizers_vis.decoders import maskgit_vqgan, rectified_flow, vit_1d  # noqa: F401  (registration)
from tokenizers_vis.decoders.base import DecoderOutput

__all__ = ["DecoderOutput"]
