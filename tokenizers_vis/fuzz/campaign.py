"""Run a seeded campaign over targets, each case within its time and memory budget, and report.

Case `i` of a campaign with seed `s` draws from `random.Random(f"{s}:{target}:{i}")` (seeding
from a string hashes it with SHA-512: the same on every machine and run), so a failure is
reproduced by its target, seed and index alone; its input bytes are kept too.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tokenizers_vis.errors import VistokError
from tokenizers_vis.fuzz.guard import CaseTimeout, Usage, guarded
from tokenizers_vis.fuzz.targets import Target

__all__ = ["Failure", "Report", "TargetStats", "run_campaign"]


@dataclass
class Failure:
    """A case that did not end in acceptance or a `VistokError` within its budgets.

    Attributes:
        target, case, seed: how to make it again.
        kind: "exception", "silent" (an oracle failed), "time" or "memory".
        error: the exception's class name.
        where: the innermost library frame (`path:line in function`).
        message: its first line.
        data: the input's bytes.
        note: how the case was made.
    """

    target: str
    case: int
    seed: int
    kind: str
    error: str
    where: str
    message: str
    data: bytes
    note: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Failures with one key are one class (one bug, most likely)."""
        return self.target, self.kind, self.error, self.where


@dataclass
class TargetStats:
    cases: int = 0
    refused: int = 0
    accepted: int = 0
    failed: int = 0
    seconds: float = 0.0
    worst_seconds: float = 0.0
    worst_peak_bytes: int = 0


@dataclass
class Report:
    seed: int
    stats: dict[str, TargetStats] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def cases(self) -> int:
        return sum(s.cases for s in self.stats.values())

    def classes(self) -> dict[tuple[str, str, str, str], list[Failure]]:
        """Failures grouped by class, each group's smallest input first."""
        out: dict[tuple[str, str, str, str], list[Failure]] = {}
        for failure in self.failures:
            out.setdefault(failure.key, []).append(failure)
        return {k: sorted(v, key=lambda f: len(f.data)) for k, v in out.items()}

    def summary(self, reproducers: int = 1, max_hex: int = 512) -> str:
        """Per target: cases, refused, accepted, failed, worst time and peak memory; then each
        failure class with its smallest reproducer in hex."""
        lines = [
            f"fuzz seed {self.seed}: {self.cases} cases in {self.seconds:.1f} s, "
            f"{len(self.failures)} failed in {len(self.classes())} classes"
            + (" (stopped at the time budget)" if self.stopped_early else "")
        ]
        for name, s in self.stats.items():
            lines.append(
                f"  {name:24s} {s.cases:6d} cases: {s.refused} refused, {s.accepted} accepted, "
                f"{s.failed} failed; {s.seconds:.1f} s, worst {s.worst_seconds * 1e3:.0f} ms, "
                f"peak {s.worst_peak_bytes / 2**20:.1f} MiB"
            )
        for (target, kind, error, where), group in self.classes().items():
            first = group[0]
            lines.append(f"FAIL {target} [{kind}] {error} at {where}: {len(group)} cases")
            lines.append(f"  {first.message[:300]}")
            for f in group[:reproducers]:
                shown = f.data[:max_hex].hex() + ("..." if len(f.data) > max_hex else "")
                lines.append(f"  case {f.case} ({f.note}), {len(f.data)} bytes: {shown}")
        return "\n".join(lines)


def _where(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    ours = [
        f
        for f in frames
        if ("/tokenizers_vis/" in f.filename or "/generation/" in f.filename)
        and "/fuzz/" not in f.filename
    ]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "?"
    short = frame.filename.split("/tokenizers_vis/")[-1].split("/site-packages/")[-1]
    return f"{short}:{frame.lineno} in {frame.name}"


def _kind(err: BaseException) -> str:
    if isinstance(err, CaseTimeout):
        return "time"
    if isinstance(err, AssertionError):
        return "silent"
    text = str(err).lower()
    if isinstance(err, MemoryError) or "allocate" in text or "out of memory" in text:
        return "memory"
    return "exception"


def _schedule(targets: Sequence[Target]) -> list[Target]:
    return [t for t in targets for _ in range(t.weight)]


def run_campaign(
    targets: Sequence[Target],
    cases: int,
    seed: int = 0,
    case_seconds: float = 5.0,
    case_bytes: int = 512 << 20,
    total_seconds: float | None = None,
    progress: Callable[[int, Report], None] | None = None,
    first: int = 0,
) -> Report:
    """Run `cases` cases spread over `targets` by weight.

    Args:
        case_seconds: hard wall-clock limit of one case.
        case_bytes: memory one case may add (a hard cap, and the budget its peak must meet).
        total_seconds: stop early (`Report.stopped_early`) once the campaign has run this long.
        progress: called after each case with its index and the report so far.
        first: index of the first case (cases `first .. first + cases - 1`: reproduce one).
    """
    report = Report(seed)
    schedule = _schedule(targets)
    start = time.perf_counter()
    for i in range(first, first + cases):
        if total_seconds is not None and time.perf_counter() - start > total_seconds:
            report.stopped_early = True
            break
        target = schedule[i % len(schedule)]
        stats = report.stats.setdefault(target.name, TargetStats())
        _one(target, i, seed, case_seconds, case_bytes, report, stats)
        if progress is not None:
            progress(i, report)
    report.seconds = time.perf_counter() - start
    return report


def _one(
    target: Target,
    i: int,
    seed: int,
    case_seconds: float,
    case_bytes: int,
    report: Report,
    stats: TargetStats,
) -> None:
    case = target.make(random.Random(f"{seed}:{target.name}:{i}"))
    usage, failure = Usage(), None
    try:
        with guarded(case_seconds, case_bytes, usage):
            target.run(case)
        stats.accepted += 1
    except VistokError:
        stats.refused += 1
    except (Exception, CaseTimeout) as err:  # noqa: BLE001  (every foreign exception is a finding)
        first = (str(err).splitlines() or [""])[0]
        failure = (_kind(err), type(err).__name__, _where(err), first)
    if failure is None and usage.peak_bytes > case_bytes:
        failure = ("memory", "over budget", "-", f"peak {usage.peak_bytes / 2**20:.0f} MiB")
    stats.cases += 1
    stats.seconds += usage.seconds
    stats.worst_seconds = max(stats.worst_seconds, usage.seconds)
    stats.worst_peak_bytes = max(stats.worst_peak_bytes, usage.peak_bytes)
    if failure is not None:
        stats.failed += 1
        report.failures.append(Failure(target.name, i, seed, *failure, case.data, case.note))
