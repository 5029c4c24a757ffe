"""Which files a command reads and where each result goes; why an input image failed.

Inputs are files, folders (walked recursively, hidden entries skipped, only files whose
extension the command handles) and globs (expanded here too, for shells that pass them
quoted). Outputs:
- no `-o`: beside each input, the suffix replaced (`a.jpg` -> `a.vtok`);
- one input file and `-o` that is not a directory: `-o` is the output file;
- otherwise `-o` is a directory: a folder's tree (and a glob's, below its first wildcard) is
  mirrored under it, plain files land at its top.
Symlinks inside a folder follow the rule pretrained directories follow (`safe_read.check_inside`):
a link to a file inside the folder is read (under the link's name); a link to a file outside it
is not followed and is listed as a failure naming its target (name the target itself to include
it); a linked directory is never descended (no loops, no file counted twice): one pointing inside
the folder counts as ignored (its files are walked under their own names), one pointing outside
is a failure like a file's. Inputs named on the command line (a file, a glob's matches) are the
user's choice and are read where they point.
Two inputs that would map to one output (`a.jpg` and `a.png`) keep their full names
(`a.jpg.vtok`, `a.png.vtok`); clashes that remain are failures, never an overwrite.
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from tokenizers_vis.errors import UsageError

__all__ = [
    "Job",
    "expand",
    "image_extensions",
    "image_failure_reason",
    "plan",
    "read_regular",
    "safe_name",
]


@dataclass(frozen=True)
class Job:
    """One input and its output.

    Attributes:
        src: the input file.
        rel: its path below the folder or glob it came from (POSIX, for names in containers).
        dst: the output file (None when writing into a container).
    """

    src: Path
    rel: str
    dst: Path | None


def image_extensions() -> frozenset[str]:
    """Lower-case extensions of the formats Pillow can read (".jpg", ".png", ...)."""
    Image.init()
    return frozenset(ext for ext, f in Image.registered_extensions().items() if f in Image.OPEN)


def _outside(path: Path, folder: Path) -> str | None:
    """Why a symlink below `folder` is not followed (it leaves the folder), else None."""
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    if real.is_relative_to(base):
        return None
    return f"symlink to {real}, outside {folder}: not followed (name it to include it)"


def _walk(
    folder: Path, suffixes: frozenset[str]
) -> tuple[list[tuple[Path, str]], list[tuple[str, str]], int]:
    """Files below `folder` with one of `suffixes`, sorted; (path, reason) symlinks refused; and
    how many other entries were ignored (see the module doc for symlinks)."""
    found, refused, ignored = [], [], 0
    for root, dirs, files in os.walk(folder):
        visible = sorted(d for d in dirs if not d.startswith("."))
        dirs[:] = [d for d in visible if not os.path.islink(os.path.join(root, d))]
        for name in sorted(set(visible) - set(dirs)):  # linked directories: never descended
            why = _outside(Path(root) / name, folder)
            if why:
                refused.append((str(Path(root) / name), why))
            else:
                ignored += 1
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.suffix.lower() not in suffixes:
                ignored += 1
            elif path.is_symlink() and (why := _outside(path, folder)):
                refused.append((str(path), why))
            else:
                found.append((path, path.relative_to(folder).as_posix()))
    return found, refused, ignored


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
    return Path(*fixed) if fixed else Path(".")


def expand(
    inputs: Iterable[str], suffixes: frozenset[str]
) -> tuple[list[tuple[Path, str]], list[tuple[str, str]], int, bool]:
    """Inputs -> ((path, rel) files, (input, reason) failures, ignored count, single file?)."""
    files, failures, ignored, kinds = [], [], 0, []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found, refused, skipped = _walk(path, suffixes)
            files += found
            failures += refused
            ignored += skipped
            kinds.append("dir")
        elif os.path.lexists(path):
            files.append((path, path.name))
            kinds.append("file")
        elif glob.has_magic(text):
            base = _glob_base(text)
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                failures.append((text, "no files match this pattern"))
            for match in map(Path, matches):
                if match.is_dir():
                    found, refused, skipped = _walk(match, suffixes)
                    files += [(p, f"{match.relative_to(base).as_posix()}/{r}") for p, r in found]
                    failures += refused
                    ignored += skipped
                else:
                    files.append((match, match.relative_to(base).as_posix()))
            kinds.append("glob")
        else:
            failures.append((text, "no such file or directory"))
    return files, failures, ignored, kinds == ["file"]


def plan(
    inputs: Iterable[str], output: str | None, suffixes: frozenset[str], out_suffix: str
) -> tuple[list[Job], list[tuple[str, str]], int]:
    """Map inputs to outputs (see the module docstring).

    Args:
        inputs: the command's input arguments.
        output: `-o`, or None.
        suffixes: extensions picked up inside folders.
        out_suffix: the outputs' extension (".vtok", ".png", ...); "" when `output` is a
            container (every Job's dst is then None).

    Returns:
        jobs, (input, reason) failures, number of files ignored inside folders.

    Raises:
        UsageError: `-o` is an existing file but several outputs are asked for.
    """
    files, failures, ignored, single = expand(inputs, suffixes)
    if not out_suffix:
        return [Job(src, rel, None) for src, rel in files], failures, ignored
    out = None if output is None else Path(output)
    to_file = single and out is not None and not out.is_dir() and not output.endswith(os.sep)
    if out is not None and not to_file and out.exists() and not out.is_dir():
        raise UsageError(f"-o {output} is a file, but several inputs need a directory")

    def destination(src: Path, rel: str, full: bool) -> Path:
        name = PurePosixPath(rel)
        stem = name.name if full else name.stem
        if out is None:
            return src.with_name(stem + out_suffix)
        if to_file:
            return out
        return out.joinpath(*name.parent.parts, stem + out_suffix)

    by_dst: dict[Path, list[tuple[Path, str]]] = defaultdict(list)
    for src, rel in files:
        by_dst[destination(src, rel, full=False)].append((src, rel))
    jobs, taken = [], {}
    for dst, group in by_dst.items():
        for src, rel in group:
            final = dst if len(group) == 1 else destination(src, rel, full=True)
            if final in taken:
                failures.append((str(src), f"its output {final} clashes with {taken[final]}'s"))
                continue
            taken[final] = src
            jobs.append(Job(src, rel, final))
    order = {src: i for i, (src, _) in enumerate(files)}
    jobs.sort(key=lambda job: order[job.src])
    return jobs, failures, ignored


def read_regular(path: Path) -> bytes:
    """A regular file's bytes; a FIFO or a device (/dev/zero) is refused, not read forever
    (opened non-blocking: opening a FIFO would wait for a writer)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return f.read()


def safe_name(name: str, suffix: str, fallback: str) -> PurePosixPath:
    """A container record's name as a relative output path that cannot leave the folder."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or ":" in p for p in parts):
        parts = [fallback]
    path = PurePosixPath(*parts)
    return path.with_name(path.stem + suffix) if path.stem else PurePosixPath(fallback + suffix)


_SIGNATURES = {
    b"\x89PNG": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
    b"RIFF": "RIFF/WebP",
    b"\x00\x00\x00\x0cjP": "JPEG 2000",
}


def image_failure_reason(message: str, path: Path) -> str:
    """A `BadImageError` message -> the reason a summary lists (category first)."""
    if message.startswith("empty"):
        return "zero bytes"
    if "truncated" in message:
        return "truncated: " + message.partition(": ")[2]
    if message.startswith("too large"):
        return "too large for memory: " + message.partition(": ")[2]
    if message.startswith("not a file"):
        return "unreadable: not a regular file"
    if "cannot identify image file" in message:
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as err:
            return f"unreadable: {err.strerror}"
        kind = next((k for sig, k in _SIGNATURES.items() if head.startswith(sig)), None)
        if kind is None:
            return "not an image (no image format recognised)"
        return f"unsupported mode: a {kind} file Pillow cannot decode (pixel format or variant)"
    if "not supported" in message or "mode" in message:
        return "unsupported mode: " + message.partition(": ")[2]
    return "unreadable: " + message.partition(": ")[2]
