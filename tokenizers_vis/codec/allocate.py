"""Rate-distortion allocation: a k per tile that minimises total distortion within a bit budget.

Each tile t offers a few operating points j (its prefix decoded at k = grid[j]): a cost
`cost[t, j]` in bits and a distortion `dist[t, j]` (the tile's squared error). Minimising the
sum of distortions under a total cost is the classic bit-allocation problem (Shoham & Gersho,
"Efficient bit allocation for an arbitrary set of quantizers", 1988): on each tile's lower
convex hull the optimum for any Lagrange multiplier takes every segment whose slope (distortion
saved per bit) beats it, so taking hull segments in order of falling slope, while they fit,
traces the optimal frontier. What that leaves unspent (less than the next segment of any tile)
then buys the best off-hull points that still fit, one at a time.

Pure numpy, no model: `codec.budget` measures the points and checks the written file.
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = ["allocate", "lower_hull"]

# After the hull walk, at most this many single upgrades spend what is left; each one scans
# every tile, and what is left is under one hull step, so a handful usually fills it.
MAX_FILL_STEPS = 256


def lower_hull(cost: np.ndarray, dist: np.ndarray) -> list[int]:
    """Indices of one tile's points on the lower convex hull, from its cheapest point.

    Args:
        cost: (m,) bits, strictly increasing.
        dist: (m,) distortion.

    Returns:
        Indices i_0 = 0 < i_1 < ... with falling distortion and falling slope
        (dist[i_a] - dist[i_b]) / (cost[i_b] - cost[i_a]).
    """
    hull = [0]
    for j in range(1, len(cost)):
        if dist[j] >= dist[hull[-1]]:
            continue  # costs more, buys nothing
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b sits on or above the chord a -> j: j saves more per bit from a than b did
            if (dist[a] - dist[b]) * (cost[j] - cost[a]) <= (dist[a] - dist[j]) * (
                cost[b] - cost[a]
            ):
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def _slope(cost: np.ndarray, dist: np.ndarray, a: int, b: int) -> float:
    return float((dist[a] - dist[b]) / (cost[b] - cost[a]))


def allocate(cost: np.ndarray, dist: np.ndarray, budget: float) -> np.ndarray:
    """Per tile, the operating point to use so that the total cost stays within `budget`.

    Args:
        cost: (T, m) bits of tile t at point j, strictly increasing in j.
        dist: (T, m) distortion of tile t at point j.
        budget: bits for all tiles together; must cover every tile's point 0.

    Returns:
        (T,) int64 point indices; `cost[t, idx[t]].sum() <= budget`.

    Raises:
        ValueError: the budget does not cover point 0 of every tile.
    """
    cost, dist = np.asarray(cost, np.float64), np.asarray(dist, np.float64)
    tiles = cost.shape[0]
    chosen = np.zeros(tiles, dtype=np.int64)
    left = budget - cost[:, 0].sum()
    if left < 0:
        raise ValueError(
            f"a budget of {budget} bits is below the cheapest points' {-left + budget}"
        )
    hulls = [lower_hull(cost[t], dist[t]) for t in range(tiles)]
    # One heap entry per tile: its next hull segment, by slope (largest first).
    heap = [
        (-_slope(cost[t], dist[t], h[0], h[1]), t, 1) for t, h in enumerate(hulls) if len(h) > 1
    ]
    heapq.heapify(heap)
    while heap:
        _, t, step = heapq.heappop(heap)
        a, b = hulls[t][step - 1], hulls[t][step]
        extra = cost[t, b] - cost[t, a]
        if extra > left:
            continue  # this tile stops here; smaller steps of other tiles may still fit
        chosen[t], left = b, left - extra
        if step + 1 < len(hulls[t]):
            heapq.heappush(heap, (-_slope(cost[t], dist[t], b, hulls[t][step + 1]), t, step + 1))
    return _fill(cost, dist, chosen, left)


def _fill(cost: np.ndarray, dist: np.ndarray, chosen: np.ndarray, left: float) -> np.ndarray:
    """Spend what the hull walk left on the upgrades (any point) that save most per bit."""
    rows = np.arange(len(chosen))
    for _ in range(MAX_FILL_STEPS):
        extra = cost - cost[rows, chosen][:, None]  # (T m)
        gain = dist[rows, chosen][:, None] - dist  # (T m)
        ok = (extra > 0) & (extra <= left) & (gain > 0)
        if not ok.any():
            break
        score = np.where(ok, gain / np.where(ok, extra, 1.0), -np.inf)  # (T m)
        t, j = np.unravel_index(int(np.argmax(score)), score.shape)
        left -= extra[t, j]
        chosen[t] = j
    return chosen
