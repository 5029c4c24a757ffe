"""Encoding to a byte budget: k per tile from a rate-distortion allocation, then the exact file.

    data = codec.encode_image("photo.jpg", target_bytes=4000)   # never more than 4000 bytes
    data = codec.encode_image("photo.jpg", bpp=0.1)             # = floor(0.1 * w * h / 8) bytes

1. Measure (per batch of tiles, `tile_points`): every tile is encoded once at K and its prefix
   decoded at each k of a grid (default 1, 2, 3, 4, 6, 8, 12, ..., K: one decoder pass each,
   12 for K = 64; on photo32 it comes within 0.1 dB of measuring every k, where powers of two
   alone lose 0.2-0.3 dB); the distortion is the tile's squared error in 8-bit
   levels over its real pixels, so the sum over tiles is the image's (PSNR at scale 1).
   The cost of a prefix is what the payload coding spends on it: k * bits per token when
   bit-packed; with an entropy model the sum of -log2 p of its ids (`token_bits`; coding is
   causal, so a prefix costs the same whatever follows it).
2. Allocate (per image, `fit`): `allocate.allocate` within the budget less the fixed bytes of
   a file with per-tile lengths (header, the lengths block, checksum, measured on a written
   file), and one k for all tiles (no lengths block) as the other candidate; the lower total
   distortion wins.
3. Verify: the file is written and measured. A range coder ends within a few bytes of its
   ideal cost; a file over the budget lowers the allocation's budget by the excess and is
   written again, so the bytes returned are never more than the budget.

Budgets out of reach: below the smallest file (1 token in every tile) is an OptionsError naming
both sizes, and the header alone is said so. A budget above what K tokens in every tile cost is
no error (a budget is a ceiling, and more tokens than K do not exist): every tile then gets the
k of its least measured error, K or, where later tokens made a tile worse (they do: photo32's
photos lose up to ~0.1 dB past k = 32), less; the file is smaller than the budget and
`Fitted.capped` says so.

Distortion is MSE because the budget is then spent on what PSNR measures, and because the
grid's prefix decodes are all it needs; a perceptual distance (LPIPS) would cost one VGG pass
per tile and k, several times the decoder itself on a CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.allocate import allocate
from tokenizers_vis.codec.entropy import EntropyModel
from tokenizers_vis.codec.errors import OptionsError

__all__ = ["BudgetError", "Fitted", "TilePoints", "fit", "k_grid", "tile_points", "token_bits"]

# Re-writes when a range-coded file overshoots; each lowers the target by the excess.
MAX_ATTEMPTS = 8
DECODE_BATCH = 256


class BudgetError(OptionsError):
    """A byte budget no file of this image can meet (exit 2 in the CLI)."""


@dataclass(frozen=True)
class TilePoints:
    """What the allocation needs of a batch of tiles.

    Attributes:
        sse: (b, m) squared error (8-bit levels) over the tile's real pixels at each grid k.
        bits: (b, K) ideal bits of each token under the entropy model; None when bit-packed.
    """

    sse: np.ndarray
    bits: np.ndarray | None

    def __getitem__(self, part: slice) -> TilePoints:
        return TilePoints(self.sse[part], None if self.bits is None else self.bits[part])

    @classmethod
    def concat(cls, parts: Sequence[TilePoints]) -> TilePoints:
        """One image's tiles from the batches they were measured in."""
        bits = None if parts[0].bits is None else np.concatenate([p.bits for p in parts])
        return cls(np.concatenate([p.sse for p in parts]), bits)


@dataclass(frozen=True)
class Fitted:
    """A file that fits: its bytes, lengths, and `capped` when the budget exceeded what K
    tokens in every tile cost (every tile then has its least-error k)."""

    data: bytes
    lengths: np.ndarray
    capped: bool = False


def k_grid(max_tokens: int, grid: Sequence[int] | None = None) -> np.ndarray:
    """The k values measured per tile: `grid` (with 1 and K added), default powers of two and
    the points halfway between them.

    Raises:
        OptionsError: a k outside 1..K.
    """
    if grid is None:  # 1, 2, 3, 4, 6, 8, 12, ...: powers of two and the halfway points
        grid = [k for i in range(max_tokens.bit_length()) for k in (1 << i, 3 << i >> 1)]
        grid = [k for k in grid if k < max_tokens]
    bad = [k for k in grid if not 1 <= k <= max_tokens]
    if bad:
        raise OptionsError(f"k grid values must be in 1..{max_tokens}, got {bad}")
    return np.unique(np.asarray([1, *grid, max_tokens], dtype=np.int64))


def _sse(recon: Tensor, target: Tensor, extents: Tensor) -> Tensor:
    """(b 3 S S) uint8 pair -> (b,) float64 squared error over each tile's valid pixels."""
    s = recon.shape[-1]
    pos = torch.arange(s, device=recon.device)
    rows = (pos[None, :] < extents[:, :1].to(recon.device))[:, None, :, None]  # (b 1 S 1)
    cols = (pos[None, :] < extents[:, 1:].to(recon.device))[:, None, None, :]  # (b 1 1 S)
    err = (recon.double() - target.double()) ** 2  # (b 3 S S)
    return (err * (rows & cols)).sum(dim=(1, 2, 3))


def tile_points(
    decode: Callable[[Tensor, Tensor], Tensor],
    ids: Tensor,
    target: Tensor,
    extents: Tensor,
    grid: np.ndarray,
    entropy: EntropyModel | None,
    condition: int | None = None,
) -> TilePoints:
    """Measure a batch of tiles at every k of the grid.

    Args:
        decode: (ids (b, K, g), lengths (b,)) -> (b, 3, S, S) uint8.
        ids: (b, K, g) all K tokens of each tile.
        target: (b, 3, S, S) uint8 source tiles.
        extents: (b, 2) valid (height, width) per tile.
        grid: (m,) the k values.
        entropy: the codec's entropy model, or None (bit-packed).
        condition: the entropy class the file is coded with.
    """
    b, m = ids.shape[0], len(grid)
    # Every (k, tile) pair in decoder batches of about `DECODE_BATCH`, k-major: fewer, fuller
    # passes than one per k when batches of tiles are small.
    lengths = torch.from_numpy(np.repeat(grid, b))  # (m*b)
    tile = torch.arange(b).repeat(m)  # (m*b)
    step = max(b, DECODE_BATCH // b * b)
    sse = torch.cat(
        [
            _sse(
                decode(ids[tile[i : i + step]], lengths[i : i + step]),
                target[tile[i : i + step]],
                extents[tile[i : i + step]],
            ).cpu()
            for i in range(0, m * b, step)
        ]
    )  # (m*b)
    bits = None if entropy is None else token_bits(entropy, ids.cpu().numpy(), condition)
    return TilePoints(rearrange(sse, "(m b) -> b m", b=b).numpy(), bits)


def token_bits(model: EntropyModel, ids: np.ndarray, condition: int | None = None) -> np.ndarray:
    """Ideal bits, -log2 p, of every token of ids (b, n, g) under `model`: (b, n) float64.

    Asks the model as the coder does (token by token, sub-id by sub-id, the whole batch at
    once), so a prefix of k tokens costs the sum of the first k entries.
    """
    b, n, g = ids.shape
    bits = np.zeros((b, n))
    rows = np.arange(b)
    with model.session():
        state = model.start(b, condition)
        for t in range(n):
            for j in range(g):
                p = np.asarray(model.next_probabilities(state, ids[:, :t], ids[:, t, :j]), float)
                chosen = p[rows, ids[:, t, j]] / p.sum(axis=1)  # (b)
                bits[:, t] -= np.log2(np.maximum(chosen, 1e-300))
    return bits


def _costs(points: TilePoints, grid: np.ndarray, bits_per_token: int) -> np.ndarray:
    """(T, m) bits of each tile's prefix at each grid k."""
    if points.bits is None:
        return np.broadcast_to(grid * float(bits_per_token), points.sse.shape).copy()
    return np.cumsum(points.bits, axis=1)[:, grid - 1]


def _payload_bytes(data: bytes) -> int:
    return fmt.read_header(data)[1]


def fit(
    write: Callable[[np.ndarray], bytes],
    points: TilePoints,
    grid: np.ndarray,
    bits_per_token: int,
    budget: int,
    what: str = "this image",
) -> Fitted:
    """The best file within `budget` bytes (module docstring).

    Args:
        write: lengths (T,) -> the whole file's bytes.
        points: every tile's measurements (T tiles).
        grid: (m,) the k values measured; grid[0] = 1, grid[-1] = K.
        bits_per_token: the bit-packed cost of one token.
        budget: bytes.
        what: names the image in errors.

    Raises:
        BudgetError: not even 1 token per tile fits.
    """
    tiles, max_tokens = points.sse.shape[0], int(grid[-1])
    full = write(np.full(tiles, max_tokens))
    capped = len(full) <= budget
    if not capped:
        smallest = write(np.ones(tiles, dtype=np.int64))
        if len(smallest) > budget:
            raise BudgetError(_too_small(smallest, tiles, budget, what))
    cost, sse = _costs(points, grid, bits_per_token), points.sse
    if capped:
        best = Fitted(full, np.full(tiles, max_tokens))
    else:
        best = _uniform(write, cost, sse, grid, budget)
    if tiles > 1:
        varied = _varied(write, cost, sse, grid, budget)
        if varied is not None and _total(varied, grid, sse) < _total(best, grid, sse):
            best = varied
    return dataclasses.replace(best, capped=capped)


def _total(fitted: Fitted, grid: np.ndarray, sse: np.ndarray) -> float:
    j = np.searchsorted(grid, fitted.lengths)  # (T)
    return float(sse[np.arange(len(j)), j].sum())


def _uniform(
    write: Callable[[np.ndarray], bytes],
    cost: np.ndarray,
    sse: np.ndarray,
    grid: np.ndarray,
    budget: int,
) -> Fitted:
    """The largest grid k in every tile whose file fits (k = 1 is known to fit)."""
    tiles = cost.shape[0]
    for j in range(len(grid) - 1, -1, -1):
        lengths = np.full(tiles, int(grid[j]))
        data = write(lengths) if j == 0 or cost[:, j].sum() <= 8 * budget else b""
        if data and len(data) <= budget:
            return Fitted(data, lengths)
    raise AssertionError("k = 1 everywhere was checked to fit")  # pragma: no cover


def _varied(
    write: Callable[[np.ndarray], bytes],
    cost: np.ndarray,
    sse: np.ndarray,
    grid: np.ndarray,
    budget: int,
) -> Fitted | None:
    """The allocation's file with per-tile lengths, or None when none fits."""
    tiles = cost.shape[0]
    probe = np.ones(tiles, dtype=np.int64)
    probe[0] = 2  # two lengths: the header stores every tile's k
    data = write(probe)
    fixed = len(data) - _payload_bytes(data)  # header + lengths block + checksum
    bits = 8.0 * (budget - fixed)
    for _ in range(MAX_ATTEMPTS):
        if bits < cost[:, 0].sum():
            return None
        lengths = grid[allocate(cost, sse, bits)]
        data = write(lengths)
        if len(data) <= budget:
            return Fitted(data, lengths)
        bits -= 8.0 * (len(data) - budget)  # a range coder's last bytes: aim lower, again
    return None


def _too_small(smallest: bytes, tiles: int, budget: int, what: str) -> str:
    overhead = len(smallest) - _payload_bytes(smallest)
    if overhead > budget:
        return (
            f"a budget of {budget} bytes is below the format's own overhead for {what} "
            f"({overhead} bytes of header and checksum, before any token)"
        )
    return (
        f"a budget of {budget} bytes is below the smallest file for {what}: "
        f"{len(smallest)} bytes (1 token in each of its {tiles} tiles)"
    )
