"""Building blocks timm does not have. Transformer blocks and patch embedding come from timm."""
