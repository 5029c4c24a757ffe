"""Benchmarks of vistok on this machine: what `vistok bench` and `tools/bench.py` run.

    from tokenizers_vis.benchmark import BenchConfig, run
    run(BenchConfig.quick_config(), out="reports")   # reports/bench-<cpu-slug>-quick.json / .md

One module a section, each a function of a `Context` (device, precision, repeat counts, the
measured peak) returning {"records": [...], ...}; every record names the machine, precision,
torch version and threads:

- peak.py        matmul peak FLOP/s (fp32; bf16 where native) and the FLOP counter's check
- tokenizers.py  encode / decode images/s, fraction of peak, peak memory; RF decoder vs steps
- codec.py       .vtok files/s through `tokenizers_vis.codec`
- training.py    Lightning (`TokenizerSystem` + `Trainer`) against a bare PyTorch loop
- inception.py   TF-Inception feature speed and its exact faster paths
- memory.py      peak memory: fresh child processes on CPU, the CUDA allocator on GPU
- report.py      JSON + Markdown, written atomically
- sections.py    sections other packages add (`BenchSection` under the `vistok.bench_sections`
                 entry points): `generation` adds `gpt`, GPT tokens/s with and without the KV cache

The plug-in API (public): `BenchSection`, `CliOption`, `Context` (device, precision, repeats,
`stamp`), `measure` (warm-up, then the median of timed calls), `count_flops` (from
tokenizers_vis/flops.py).
"""

from tokenizers_vis.benchmark.common import Context, measure
from tokenizers_vis.benchmark.runner import SECTIONS, BenchConfig, run, section_names
from tokenizers_vis.benchmark.sections import ENTRY_POINT_GROUP, BenchSection, CliOption
from tokenizers_vis.flops import count_flops

__all__ = [
    "ENTRY_POINT_GROUP",
    "SECTIONS",
    "BenchConfig",
    "BenchSection",
    "CliOption",
    "Context",
    "count_flops",
    "measure",
    "run",
    "section_names",
]
