"""Where vistok keeps what it derives and can rebuild: rendered data sets, converted Inception
weights, FID reference statistics, evaluation caches.

One directory for all of them: `$VISTOK_CACHE_DIR`, else `$VISTOK_CACHE` (the name the emoji
cache first read, still honoured), else `$XDG_CACHE_HOME/vistok`, else `~/.cache/vistok`.
Everything in it is written atomically (`tokenizers_vis.atomic`) and keyed by its inputs, so
deleting it only costs the time to rebuild.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """The vistok cache directory, or the sub-path `parts` inside it (nothing is created)."""
    root = os.environ.get("VISTOK_CACHE_DIR") or os.environ.get("VISTOK_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vistok"
    return Path(root).joinpath(*parts)
