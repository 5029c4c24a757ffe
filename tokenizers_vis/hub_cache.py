"""Hugging Face repository ids resolved through the local cache only.

`Tokenizer.from_pretrained("owner/name")` and `vistok convert FAMILY owner/name DST` accept a
repository id when no local directory of that name exists. The files must already be in the
huggingface_hub cache (downloaded on a connected machine with `hf download owner/name`, or a
copied cache): nothing is downloaded at run time, whatever HF_HUB_OFFLINE says, so a run is
reproducible and works on machines without network.

The cache is found the way huggingface_hub finds it, read from the environment at call time (not
at import time, so a test or a caller may point HF_HUB_CACHE / HF_HOME elsewhere at any moment):
HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
$XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from tokenizers_vis.errors import VistokError

__all__ = ["HubCacheError", "cache_dir", "cached_repo", "is_repo_id"]

# owner/name[@revision]: the characters the Hub allows, one slash, no "--" or ".." (which the
# cache's folder names and paths could not tell apart). A path such as "./x/y" or "/abs/x" is
# never a repo id.
_REPO_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(@(?P<rev>[\w./-]+))?$"
)


class HubCacheError(VistokError):
    """A repository id that is not (completely) in the local Hugging Face cache."""


def is_repo_id(text: str) -> bool:
    """True when `text` reads as `owner/name` or `owner/name@revision`."""
    match = _REPO_ID.match(text)
    return bool(match) and "--" not in text and ".." not in text


def cache_dir() -> Path:
    """The huggingface_hub cache directory, from the environment as it is now."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def cached_repo(
    name: str,
    files: Sequence[str] = (),
    error: type[Exception] = HubCacheError,
) -> Path | None:
    """The cached snapshot directory of repository `name`, or None when `name` is no repo id.

    Args:
        name: "owner/name" or "owner/name@revision" (a branch, tag or commit; default main).
        files: file names the snapshot must hold (e.g. config.json, model.safetensors); a
            snapshot without one is refused rather than half used.
        error: the exception class raised (the caller's own error type, so its callers catch
            one class whatever went wrong).

    Raises:
        error: `name` is a repo id but the cache lacks its snapshot or one of `files`; the
            message says where it looked and what to download.
    """
    match = _REPO_ID.match(name)
    if not match or not is_repo_id(name):
        return None
    repo, revision = match["repo"], match["rev"]
    cache = cache_dir()
    folder = cache / f"models--{repo.replace('/', '--')}"
    download = f"`hf download {repo}{f' --revision {revision}' if revision else ''}`"
    hint = (
        f"download it on a connected machine ({download}) and copy the cache here, or point "
        "HF_HUB_CACHE / HF_HOME at a cache that holds it; nothing is downloaded at run time"
    )
    # Imported only here: huggingface_hub takes about a second to import and is needed only
    # when a name is a repository id.
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(
            snapshot_download(repo, revision=revision, cache_dir=cache, local_files_only=True)
        )
    except Exception as err:  # LocalEntryNotFoundError, a bad revision, HFValidationError ...
        raise error(
            f"{name} is neither a local directory nor a repository in the Hugging Face cache "
            f"(looked in {folder}: {type(err).__name__}); {hint}"
        ) from None
    absent = [f for f in files if not (snapshot / f).is_file()]
    if absent:
        raise error(f"{name}: the cached snapshot {snapshot} lacks {', '.join(absent)}; {hint}")
    return snapshot
