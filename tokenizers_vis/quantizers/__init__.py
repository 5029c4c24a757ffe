"""Quantizers: import registers them by name in QUANTIZERS."""

from tokenizers_vis.quantizers import factorized, fsq, vq  # noqa: F401  (registration)
from tokenizers_vis.quantizers.base import Quantizer, QuantizerOutput
from tokenizers_vis.quantizers.factorized import FactorizedOutput, sub_codes

__all__ = ["FactorizedOutput", "Quantizer", "QuantizerOutput", "sub_codes"]
