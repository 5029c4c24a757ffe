"""A time and memory budget for one fuzz case, enforced and measured.

- Time: SIGALRM (main thread, POSIX) raises `CaseTimeout` when the budget runs out, so a case
  that would run for minutes ends (Python code is interrupted at once, a C loop when it returns).
- Memory: on Linux the data segment limit (RLIMIT_DATA, which counts every private writable
  mapping since Linux 4.7: numpy's and torch's allocations too) is set to what the process uses
  plus a hard cap, so a decompression bomb fails fast with MemoryError instead of taking the
  machine; the peak resident memory of the case is measured from /proc/self/status (VmHWM, reset
  before the case through /proc/self/clear_refs). Elsewhere tracemalloc measures Python and
  numpy allocations.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CaseTimeout", "Usage", "guarded"]

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


class CaseTimeout(BaseException):  # noqa: N818  (not an error of the input: a budget's end)
    """The case ran out of its time budget."""


@dataclass
class Usage:
    """What a case spent: wall seconds and peak memory above the process's baseline (bytes)."""

    seconds: float = 0.0
    peak_bytes: int = 0


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    try:
        _CLEAR.write_text("5")  # resets VmHWM to the current resident size
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _memory_cap(cap_bytes: int | None) -> Iterator[None]:
    try:
        import resource
    except ImportError:  # not POSIX
        yield
        return
    data_kb = _status_kb("VmData")
    if cap_bytes is None or data_kb is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = data_kb * 1024 + cap_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


@contextlib.contextmanager
def _time_cap(seconds: float | None) -> Iterator[None]:
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise CaseTimeout(f"over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def guarded(
    seconds: float | None, cap_bytes: int | None, usage: Usage, trace: bool = False
) -> Iterator[None]:
    """Run the block under a hard time limit and memory cap; fill `usage` when it ends.

    Args:
        seconds: wall-clock limit (None: none).
        cap_bytes: memory the block may add to the process (None: no cap).
        usage: filled with the seconds spent and the peak memory above the start.
        trace: measure with tracemalloc even where /proc gives the resident peak (slower).
    """
    rss_kb = _status_kb("VmRSS")
    by_rss = not trace and rss_kb is not None and _reset_peak()
    if not by_rss:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        with _memory_cap(cap_bytes), _time_cap(seconds):
            yield
    finally:
        usage.seconds = time.perf_counter() - start
        if by_rss:
            usage.peak_bytes = max(0, ((_status_kb("VmHWM") or 0) - rss_kb) * 1024)
        else:
            usage.peak_bytes = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
