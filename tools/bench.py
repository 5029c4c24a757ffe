"""Benchmark vistok on this machine: `vistok bench` as a script (same options).

    .venv/bin/python tools/bench.py --quick --out /tmp/bench    # seconds-long smoke run
    .venv/bin/python tools/bench.py --out reports               # the full run, machine idle

Writes reports/bench-<cpu-or-gpu-model>.json and .md; see `tokenizers_vis.benchmark`.
"""

from __future__ import annotations

from tokenizers_vis.cli.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
