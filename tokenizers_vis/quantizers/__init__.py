"""Quantizers: import registers them by name in QUANTIZERS."""

from tokenizers_vis.quantizers import fsq, vq  # noqa: F401  (registration)
from tokenizers_vis.quantizers.base import Quantizer, QuantizerOutput

__all__ = ["Quantizer", "QuantizerOutput"]
