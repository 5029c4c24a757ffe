"""Peak memory of one call: a fresh process's resident set on CPU, the CUDA allocator on GPU.

CPU: in-process numbers are unreliable (the allocator keeps freed pages, an earlier, larger
call hides a later one), so every measurement runs in a fresh child process. The children are
forked from a `multiprocessing` fork server that imported torch and vistok once (a spawned
interpreter would spend seconds importing them per measurement, and forking the benchmark
itself is unsafe once OpenMP threads exist). The child builds the model and inputs (and runs
the call once on one image, so one-time costs such as kernel code paged in are not counted),
resets the kernel's peak-RSS counter (`/proc/self/clear_refs` 5), runs the call once and
reports `VmHWM`, the resident high-water mark, and `VmRSS` just before the call: `extra_mib` is
what the call itself needed on top of the model and inputs, `peak_mib` the whole process
(torch included).
Where the counter cannot be reset, `ru_maxrss` of the child is reported instead.

GPU: `torch.cuda.max_memory_allocated` around the call (tensors only, model included).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tokenizers_vis.benchmark.common import sync

# Prepare = a module-level function (picklable by name): task -> the call to measure.
Prepare = Callable[[dict[str, Any]], Callable[[], Any]]
PRELOAD = ["torch", "tokenizers_vis.benchmark.tokenizers"]
_MIB = 2**20


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _child(prepare: Prepare, task: dict[str, Any], threads: int, conn: Any) -> None:
    try:
        torch.set_num_threads(threads)
        call = prepare(task)
        if _reset_peak() and _status_kib("VmHWM") is not None:
            before = _status_kib("VmRSS")
            call()
            peak = _status_kib("VmHWM")
            result = {"peak_mib": peak / 1024, "extra_mib": (peak - before) / 1024,
                      "method": "fresh process, VmHWM after clear_refs"}  # fmt: skip
        else:
            call()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak_mib = peak / _MIB if sys.platform == "darwin" else peak / 1024  # bytes vs KiB
            result = {"peak_mib": peak_mib, "extra_mib": None,
                      "method": "fresh process, ru_maxrss"}  # fmt: skip
        conn.send(result)
    except BaseException as err:  # reported, not raised: the parent records the reason
        conn.send({"error": f"{type(err).__name__}: {err}"})
    finally:
        conn.close()


_context: Any = None


def context() -> Any:
    """The multiprocessing context the children come from (started once, reused)."""
    global _context
    if _context is None:
        if "forkserver" in mp.get_all_start_methods():
            _context = mp.get_context("forkserver")
            _context.set_forkserver_preload(PRELOAD)
        else:
            _context = mp.get_context("spawn")
    return _context


def start_server() -> None:
    """Start the fork server now, so its imports overlap with other work."""
    ctx = context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def cpu_peak(prepare: Prepare, task: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Peak memory of `prepare(task)()` in a fresh child process (see the module docstring)."""
    ctx = context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(prepare, task, torch.get_num_threads(), send))
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            child.terminate()
            return {"error": f"no result within {timeout:.0f} s"}
        result = receive.recv()
    except EOFError:
        result = {"error": "the child process died"}
    finally:
        child.join()
        receive.close()
    if child.exitcode not in (0, None) and "error" not in result:
        result["error"] = f"exit code {child.exitcode}"
    return result


def cuda_peak(call: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Peak CUDA memory of one `call()`: allocated tensors, before and at the peak."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_mib": peak / _MIB, "extra_mib": (peak - before) / _MIB,
            "method": "torch.cuda.max_memory_allocated"}  # fmt: skip


def peak_memory(
    device: torch.device,
    call: Callable[[], Any],
    prepare: Prepare,
    task: dict[str, Any],
    enabled: bool = True,
) -> dict[str, Any]:
    """Peak memory of one call: on GPU of `call` itself; on CPU of the call `prepare(task)`
    builds again in a fresh child process (`task` gets `"device": "cpu"`)."""
    if not enabled:
        return {"peak_mib": None, "extra_mib": None, "method": "not measured"}
    if device.type == "cuda":
        return cuda_peak(call, device)
    return cpu_peak(prepare, task | {"device": "cpu"})
