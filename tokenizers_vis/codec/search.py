"""Adaptive length: the smallest prefix k per tile whose reconstruction meets a PSNR target.

Quality rises with k (every prefix decodes to the whole image, longer ones closer), so a
bisection over 1..K finds the smallest k meeting the target in 1 + ceil(log2 K) decoder passes
(7 for K = 64), each pass one batch holding every tile still being searched, each tile at its
own midpoint (`Tokens.lengths`). All K tokens are encoded once; a prefix of them is the code at
any k. The bisection only ever returns a k it has measured to meet the target, so the target
holds even where quality is not perfectly monotone in k (it may then miss a smaller k). A tile
that misses the target even at K gets K, and is reported.

PSNR is measured the way the file will be seen: the decoded tile rounded to 8 bits, against the
8-bit source, over the tile's real pixels (edge padding excluded). With the tile layout at scale
1 every tile meeting the target means the whole image does (its MSE is a mean of tile MSEs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import Tensor

from tokenizers_vis.metrics.reconstruction import psnr_u8

__all__ = ["smallest_lengths", "tile_psnr"]


def tile_psnr(recon: Tensor, target: Tensor, extents: Tensor) -> Tensor:
    """PSNR in dB of 8-bit tiles over their valid pixels.

    Args:
        recon, target: (b, 3, S, S) uint8.
        extents: (b, 2) int64 valid (height, width) from the top-left corner of each tile.

    Returns:
        (b,) float64, `inf` for identical tiles.
    """
    s = recon.shape[-1]
    pos = torch.arange(s, device=recon.device)
    rows = pos[None, :] < extents[:, :1].to(recon.device)  # (b S)
    cols = pos[None, :] < extents[:, 1:].to(recon.device)  # (b S)
    mask = rearrange(rows, "b h -> b 1 h 1") & rearrange(cols, "b w -> b 1 1 w")  # (b 1 S S)
    return psnr_u8(recon, target, mask)


def smallest_lengths(
    decode: Callable[[Tensor, Tensor], Tensor],
    ids: Tensor,
    target: Tensor,
    extents: Tensor,
    target_psnr: float,
) -> tuple[Tensor, Tensor]:
    """Per tile, the smallest k whose decoded prefix meets `target_psnr`.

    Args:
        decode: (ids (m, K, g), lengths (m,)) -> (m, 3, S, S) uint8 reconstructions.
        ids: (b, K, g) ids of all K tokens.
        target: (b, 3, S, S) uint8 source tiles.
        extents: (b, 2) valid (height, width) per tile.
        target_psnr: dB.

    Returns:
        lengths (b,) int64 and met (b,) bool (False where even K misses the target).
    """
    b, max_tokens = ids.shape[:2]

    def meets(index: Tensor, k: Tensor) -> Tensor:
        recon = decode(ids[index], k)  # (m 3 S S)
        return tile_psnr(recon, target[index], extents[index]) >= target_psnr  # (m)

    every = torch.arange(b)
    hi = torch.full((b,), max_tokens, dtype=torch.int64)  # smallest k known to meet (or K)
    lo = torch.zeros(b, dtype=torch.int64)  # largest k known to miss
    met = meets(every, hi).cpu()  # (b)
    lo[~met] = max_tokens  # nothing to search where even K misses
    while True:
        active = (hi - lo > 1).nonzero()[:, 0]  # (m)
        if active.numel() == 0:
            return hi, met
        mid = (lo[active] + hi[active]) // 2  # (m)
        ok = meets(active, mid).cpu()  # (m)
        hi[active[ok]] = mid[ok]
        lo[active[~ok]] = mid[~ok]
