"""Benchmark GPT sampling: tokens/s with and without the KV cache at K = 64 and 256.

    .venv/bin/python tools/bench_gpt.py [--gpt-preset gpt_emoji] [--gpt-ks 64,256]
        [--gpt-batch 4] [--gpt-vocab 4096] [--gpt-cfg 2.0] [--device auto] [--out reports]

The `gpt` section of `tools/bench.py` / `vistok bench` (`generation.bench`, an entry point), kept
under its old name; any other `vistok bench` option works too.
"""

from __future__ import annotations

import sys

from tokenizers_vis.cli.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--sections", "gpt", *sys.argv[1:]]))
