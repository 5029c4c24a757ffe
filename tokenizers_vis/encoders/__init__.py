"""Encoders and token drop: import registers them by name."""

from tokenizers_vis.encoders import registers, token_drop, vit_1d  # noqa: F401  (registration)
