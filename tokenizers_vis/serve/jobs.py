"""Long work of the page (rectified-flow decoding, GPT sampling) as jobs with progress and cancel.

A job runs a function `fn(job)` on one worker thread (the 2-core machines this serves on gain
nothing from running two models at once, and the interactive ViT decodes keep their own
threads). The function reports `job.progress(fraction, message)`; the page polls it. Cancelling
is immediate, not at the next checkpoint the function happens to call: while jobs run, a global
torch forward pre-hook raises `Cancelled` inside the next module call of the cancelled job's
thread, so a 100-step sampler stops within one network evaluation, whatever the model.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from tokenizers_vis.errors import VistokError

__all__ = ["Cancelled", "Job", "JobRunner"]

log = logging.getLogger("vistok.serve")


class Cancelled(Exception):
    """Raised inside a job's thread when the page cancelled it."""


class Job:
    """One unit of long work; its state is what `GET /api/jobs/ID` returns."""

    def __init__(self, job_id: str, kind: str) -> None:
        self.id, self.kind = job_id, kind
        self.state = "queued"  # queued | running | done | error | cancelled
        self.fraction, self.message = 0.0, "queued"
        self.result: Any = None
        self.error: str | None = None
        self.started = time.monotonic()
        self.expected_s: float | None = None  # set for work that reports no steps of its own
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()
        if self.state == "queued":
            self.state, self.message = "cancelled", "cancelled"

    def progress(self, fraction: float, message: str) -> None:
        """Report progress; raises `Cancelled` when the job was cancelled meanwhile."""
        if self.cancelled:
            raise Cancelled
        self.fraction, self.message = max(0.0, min(1.0, fraction)), message

    def to_dict(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        fraction = self.fraction
        if self.state == "running" and self.expected_s:
            # A sampler that reports no steps: the bar follows the time the last one took.
            fraction = max(fraction, min(0.95, elapsed / self.expected_s))
        out = {
            "job": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": round(fraction, 3),
            "message": self.message,
            "elapsed_s": round(elapsed, 2),
        }
        if self.state == "done":
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class _CancelHook:
    """A global forward pre-hook, registered while jobs run, that raises `Cancelled` in the
    thread of a cancelled job (and does nothing in every other thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[int, Job] = {}
        self._handle: Any = None

    def __call__(self, module: torch.nn.Module, args: Any) -> None:
        job = self._active.get(threading.get_ident())
        if job is not None and job.cancelled:
            raise Cancelled

    def enter(self, job: Job) -> None:
        with self._lock:
            self._active[threading.get_ident()] = job
            if self._handle is None:
                self._handle = torch.nn.modules.module.register_module_forward_pre_hook(self)

    def leave(self) -> None:
        with self._lock:
            self._active.pop(threading.get_ident(), None)
            if not self._active and self._handle is not None:
                self._handle.remove()
                self._handle = None


class JobRunner:
    """Runs jobs one at a time on a worker thread; keeps the last `keep` jobs for polling."""

    def __init__(self, keep: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vistok-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._hook = _CancelHook()
        self.keep = keep

    def submit(self, kind: str, fn: Callable[[Job], Any]) -> Job:
        with self._lock:
            job = Job(f"{next(self._ids)}", kind)
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, fn)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(str(job_id))
        if job is None:
            raise VistokError(f"no job {job_id!r} (finished jobs are kept for a while only)")
        return job

    def _run(self, job: Job, fn: Callable[[Job], Any]) -> None:
        if job.cancelled:
            return
        job.state, job.message, job.started = "running", "running", time.monotonic()
        self._hook.enter(job)
        try:
            job.result = fn(job)
            job.fraction, job.message, job.state = 1.0, "done", "done"
        except Cancelled:
            job.state, job.message = "cancelled", "cancelled"
        except ValueError as err:  # user errors (VistokError and the library's ValueErrors)
            job.state, job.error = "error", " ".join(str(err).split())
        except Exception as err:  # a bug: logged with its traceback, one line on the page
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.state, job.error = "error", f"internal error ({type(err).__name__}): {err}"
        finally:
            self._hook.leave()

    def shutdown(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
