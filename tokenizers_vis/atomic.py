"""Writing files so that a reader sees the old file or the new one, never half of one.

A file is written to a hidden temporary name beside its destination (`.NAME.PID.XXXXXXXX.tmp`,
same directory, so the rename cannot cross file systems), then renamed. `write_atomic(...,
overwrite=False)` renames by hard link, which fails if the destination appeared meanwhile, so an
existing file is never replaced. An exception at any point, KeyboardInterrupt included, removes
the temporary file, and an `OSError` about the temporary file is raised again naming the
destination (`blame_destination`): the user is never shown, nor left with, a name they did not
give. `interruptible()` makes SIGTERM raise `Interrupted`, so `kill` unwinds the same way
Ctrl-C does instead of ending the process mid-write.

    atomic_write(path, data)                        # bytes
    atomic_write_with(path, lambda tmp: img.save(tmp, format="PNG"))   # a writer taking a path
    with AtomicFile(path) as f: f.write(...)        # a stream written piece by piece (shards)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from tokenizers_vis.errors import VistokError


def temp_path(path: Path) -> Path:
    """A unique hidden name beside `path` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _renamed(err: OSError, tmp: Path, path: Path) -> OSError | None:
    """`err` naming `path` where it named `tmp` or a file inside it (a temporary folder); None
    when it is not about `tmp`."""
    if err.errno is None:
        return None
    for name in (err.filename, err.filename2):
        text = None if name is None or isinstance(name, int) else os.fsdecode(name)
        if text == str(tmp):
            return OSError(err.errno, err.strerror, str(path))  # OSError picks the subclass
        if text is not None and text.startswith(str(tmp) + os.sep):
            return OSError(err.errno, err.strerror, str(path) + text[len(str(tmp)) :])
    return None


@contextlib.contextmanager
def blame_destination(tmp: Path, path: Path) -> Iterator[None]:
    """Within the block, an `OSError` about `tmp` (or a file in it) is raised again about `path`,
    the name the user gave (`Is a directory: out.vtoks`, not `.out.vtoks.123.abcd.tmp ->
    out.vtoks`; `DIR/config.json`, not `.DIR.123.abcd.tmp/config.json`)."""
    try:
        yield
    except OSError as err:
        renamed = _renamed(err, tmp, path)
        if renamed is None:
            raise
        raise renamed from err


def _remove(tmp: Path) -> None:
    """Remove a temporary file or (a writer's) directory; never raises."""
    try:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write_with(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it over `path`.

    Not tempfile.mkstemp: its files are private (0600); an output should get the umask's mode.
    Any failure (or Ctrl-C) removes the temporary file and leaves `path` as it was; an
    `OSError` names `path`, never the temporary file.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with blame_destination(tmp, path):
            write(tmp)
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "xb") as f:
            f.write(data)

    return atomic_write_with(path, write)


class AtomicFile:
    """A binary file opened on a temporary name beside `path`, renamed over `path` by `commit`
    (after flush and fsync: the data is on disk before the name appears) or removed by
    `discard`. As a context manager it commits on success and discards on any exception, so a
    stream written over many calls (a tar shard) is also seen whole or not at all.

    Attributes:
        path: the destination.
        file: the open temporary file to write to.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tmp = temp_path(self.path)
        with blame_destination(self._tmp, self.path):
            self.file: BinaryIO = open(self._tmp, "xb")  # noqa: SIM115  (closed by commit/discard)

    def commit(self) -> Path:
        try:
            with blame_destination(self._tmp, self.path):
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
                os.replace(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        try:
            self.file.close()  # may fail to flush (disk full): the file goes anyway
        except OSError:
            pass
        finally:
            _remove(self._tmp)

    def __enter__(self) -> BinaryIO:
        return self.file

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


class OutputExistsError(FileExistsError, VistokError):
    """The destination exists and overwriting was not asked for."""


class Interrupted(BaseException):
    """SIGTERM arrived (SIGINT raises KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def write_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> None:
    """Write `data` to `path` via a temporary file and a rename.

    Raises:
        OutputExistsError: `path` exists and `overwrite` is False (nothing is written).
    """
    path = Path(path)
    if not overwrite and os.path.lexists(path):
        raise OutputExistsError(f"{path} exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with blame_destination(tmp, path), open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with blame_destination(tmp, path):
            _publish(tmp, path, overwrite)
    finally:
        _remove(tmp)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished `tmp` to `path` (by hard link unless `overwrite`: never replaces)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if the destination appeared since the check
    except FileExistsError:
        raise OutputExistsError(f"{path} exists") from None
    except OSError as err:  # file systems without hard links
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(path):
            raise OutputExistsError(f"{path} exists") from None
        os.replace(tmp, path)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGTERM raises `Interrupted` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
