"""Time and peak memory of `vistok decode` on the hostile token files of issue 22 (items 1-2).

    PYTHONPATH=. .venv/bin/python tools/hostile_inputs.py [--repo DIR] [--label before]
        [--timeout 60] [--in-process] [--out reports/hostile-inputs]

Builds each hostile file (a few dozen bytes: a well-formed header that claims a huge image, or
an entropy-coded payload that claims tiles it does not hold, or a coding group that asks for a
huge tensor) and decodes it with `python -m tokenizers_vis.cli decode` in a child process run
from `--repo` (default: this checkout; point it at a copy of an older revision to get the
"before" numbers), recording wall time, the child's peak resident memory (`wait4` rusage), its
exit status and the last line it printed. A child still running at `--timeout` is killed.
Writes `<out>/cases-<label>.json` and `.md`; not a test: times depend on the machine and its
load, which are recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from tokenizers_vis.atomic import atomic_write
from tokenizers_vis.codec import bitpack
from tokenizers_vis.codec import format as fmt
from tokenizers_vis.codec.entropy import files_identity
from tokenizers_vis.codec.entropy_coding import EntropyParams
from tokenizers_vis.codec.identity import directory_identity
from tokenizers_vis.codec.static_table import STATIC_WEIGHTS
from tokenizers_vis.hub import SHIPPED_DIR
from tokenizers_vis.precision import cpu_model_name

MODEL = "emoji32"  # 32 px tiles, K = 64, one vocabulary of 4096
# 64 payload bytes a range decoder reads as valid (a point at the bottom of every interval:
# each id is the first value of its row), so an old reader decodes every claimed tile.
ZEROS = bytes(64)
GPT_DIR = Path(__file__).resolve().parents[1] / "generation" / "pretrained" / "gpt_emoji"


def _header(size, coded=None, k=1, coding=0, params=b"", tid=None) -> fmt.Header:
    return fmt.Header(
        tid, size, 32, 64, (4096,), (k,) * _tiles(coded or size), coded, coding, params
    )


def _tiles(size) -> int:
    return -(-size[0] // 32) * -(-size[1] // 32)


def _bitpacked(tid: bytes, size, coded=None) -> bytes:
    """A bit-packed file of k = 1 per tile (12 bits a tile), ids all 0."""
    header = _header(size, coded, tid=tid)
    return fmt.dumps_payload(header, bytes(bitpack.packed_bytes(header.num_tiles, [12])))


def cases(tid: bytes) -> dict[str, bytes]:
    """Case name -> file bytes (the issue's items 1 and 2)."""
    static_id = files_identity([SHIPPED_DIR / MODEL / STATIC_WEIGHTS])
    gpt_id = files_identity([GPT_DIR / "config.json", GPT_DIR / "model.safetensors"])
    static = EntropyParams(static_id, 0, 64).to_bytes()
    gpt = EntropyParams(gpt_id, 0, 65_536).to_bytes()
    gpt_64 = EntropyParams(gpt_id, 0, 64).to_bytes()
    return {
        "0 honest one tile (start-up cost)": _bitpacked(tid, (32, 32)),
        "1a resampled to 16,777,216x64": _bitpacked(tid, (1 << 24, 64), (32, 32)),
        "1b resampled to 30,000x30,000": _bitpacked(tid, (30_000, 30_000), (32, 32)),
        "1c resampled to 2^24x2^24": _bitpacked(tid, (1 << 24, 1 << 24), (32, 32)),
        "2a static-coded, 16,384 tiles claimed": fmt.dumps_payload(
            _header((4096, 4096), k=64, coding=1, params=static, tid=tid), b""
        ),
        "2b GPT-coded, coding group 65,536": fmt.dumps_payload(
            _header((32, 1 << 21), coding=2, params=gpt, tid=tid), b""
        ),
        "2c honest bit-packed, 524,288 tiles": _bitpacked(tid, (32 * 1024, 32 * 512)),
        "2d static-coded, 16,384 tiles in 64 bytes": fmt.dumps_payload(
            _header((4096, 4096), k=64, coding=1, params=static, tid=tid), ZEROS
        ),
        "2e GPT-coded, 16,384 tiles in 64 bytes": fmt.dumps_payload(
            _header((4096, 4096), k=64, coding=2, params=gpt_64, tid=tid), ZEROS
        ),
    }


ADDRESS_SPACE = 12 << 30  # a cap on each child, so a bomb cannot take the machine down


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_case(repo: Path, path: Path, out: Path, timeout: float, extra: list[str]) -> dict:
    """Decode one file in a child; its time, peak RSS, status and last output line."""
    argv = [sys.executable, "-m", "tokenizers_vis.cli", "decode", str(path), "-o", str(out)]
    argv += ["--device", "cpu", "--overwrite", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            argv, cwd=repo, env=env, stdout=log, stderr=log, preexec_fn=_cap_memory
        )
        killed = False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                os.kill(child.pid, signal.SIGKILL)
                killed = True
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        log.seek(0)
        lines = [x for x in log.read().decode(errors="replace").splitlines() if x.strip()]
    child.returncode = os.waitstatus_to_exitcode(status)
    reasons = [x for x in lines if "failed:" in x or "error" in x.lower()]
    last = (reasons or lines or [""])[-1]
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "exit": "killed at timeout" if killed else child.returncode,
        "last_line": last[:300],
    }


def in_process(files: dict[str, bytes]) -> dict[str, dict]:
    """Each case through `Codec.read` + `decode_stream` in this process (the code imported
    here): seconds and tracemalloc peak of the refusal or decode, and its one line."""
    from tokenizers_vis.codec import Codec
    from tokenizers_vis.codec.entropy import load_entropy_model
    from tokenizers_vis.errors import VistokError

    codec = Codec.from_pretrained(MODEL, device="cpu")
    gpt = load_entropy_model(GPT_DIR)
    out = {}
    for name, data in files.items():
        codec.set_entropy(gpt if "GPT" in name else None)
        tracemalloc.start()
        start = time.perf_counter()
        try:
            codec.decode_bytes(data)
            line = "decoded"
        except VistokError as err:
            line = f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[name] = {"ms": round(1000 * seconds, 2), "traced_peak_kb": round(peak / 1024, 1)}
        out[name]["line"] = line[:300]
        print(name, out[name], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--label", default="after")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", nargs="*", help="case name prefixes (default: all)")
    parser.add_argument("--out", default="reports/hostile-inputs")
    parser.add_argument(
        "--in-process", action="store_true", help="also time each case in this process"
    )
    args = parser.parse_args(argv)
    tid = directory_identity(MODEL)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in cases(tid).items():
            if args.only and not any(name.startswith(p) for p in args.only):
                continue
            path = Path(tmp) / f"{name.split()[0]}.vtok"
            path.write_bytes(data)
            extra = ["--entropy-model", str(GPT_DIR)] if "GPT" in name else []
            result = run_case(Path(args.repo), path, Path(tmp) / "out.png", args.timeout, extra)
            results[name] = {"bytes": len(data), **result}
            print(name, results[name], flush=True)
    if args.in_process:
        chosen = {n: d for n, d in cases(tid).items() if n in results}
        for name, row in in_process(chosen).items():
            results[name]["in_process"] = row
    doc = {
        "label": args.label,
        "repo": args.repo,
        "cpu": cpu_model_name(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "timeout_s": args.timeout,
        "cases": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"cases-{args.label}.json", (json.dumps(doc, indent=2) + "\n").encode())
    rows = [
        f"| {n} | {r['bytes']} | {r['seconds']} | {r['peak_rss_mb']} | {r['exit']} | "
        + (
            f"{r['in_process']['ms']} | {r['in_process']['traced_peak_kb']} | "
            if "in_process" in r
            else "- | - | "
        )
        + f"{r['last_line'].replace('|', '/')} |"
        for n, r in results.items()
    ]
    load = ", ".join(f"{x:.2f}" for x in doc["load_average"])
    text = "\n".join(
        [
            f"# Hostile token files: `vistok decode` ({args.label})",
            "",
            f"{doc['cpu']}, {doc['cores']} cores, load average {load}; one thread "
            f"(OMP_NUM_THREADS=1); killed after {args.timeout:.0f} s. Code: {args.repo}.",
            "",
            "Child: `vistok decode FILE` in a fresh process (wall seconds include start-up, see",
            "case 0). In process: `Codec.decode_bytes` of the same bytes, model loaded (ms,",
            "tracemalloc peak KB).",
            "",
            "| case | file bytes | child s | child peak RSS MB | exit | in-process ms "
            "| traced KB | last line |",
            "|---|---:|---:|---:|---|---:|---:|---|",
            *rows,
            "",
        ]
    )
    atomic_write(out / f"cases-{args.label}.md", text.encode())
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
