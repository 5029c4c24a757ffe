"""`vistok bench`: speed, FLOP fraction and memory on this machine (reports/bench-*.json, .md).

    vistok bench --quick --out /tmp/bench                # seconds: every section, tiny models
    vistok bench --out reports                           # the full run (minutes)
    vistok bench --sections tokenizers,rf --models emoji32,vit_b16_k64_vq@1+4 --repeats 5

Sections: peak (matmul FLOP/s, FLOP counter check), tokenizers (encode / decode images/s,
fraction of peak, peak memory), rf (rectified-flow decoder time vs steps), codec (.vtok
files/s), training (Lightning vs a bare PyTorch loop), inception (TF-Inception feature speed and
its exact faster paths), and the sections installed packages add under the
`vistok.bench_sections` entry points (generation: gpt, tokens/s with and without the KV
cache; their options below); reference, only when asked for: a converted TiTok-B-64 against the
reference implementation in a checkout named by --reference-titok DIR (or
VISTOK_TITOK_REFERENCE), encode and decode in fp32 and bf16, with the speed ratio and the two
models' agreement. The matmul peak is
measured whenever a section reports fractions of it. `--device auto` runs on the CPU and, when
CUDA is available, on the GPU too, writing one report per device. Speed depends on whatever
else the machine runs: benchmark an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from tokenizers_vis.cli.common import (
    ArgumentParser,
    add_limit_flags,
    int_list,
    limits_from_args,
    positive,
    run,
)
from tokenizers_vis.precision import PRECISIONS


def model_list(text: str) -> list[tuple[str, tuple[int, ...] | None]]:
    """argparse type: "emoji32,vit_b16_k64_vq@1+4" -> [("emoji32", None), ("vit_b16_k64_vq",
    (1, 4))]."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, _, batches = item.partition("@")
        try:
            sizes = tuple(int(b) for b in batches.split("+")) if batches else None
        except ValueError:
            message = f"batch sizes after @ are +-separated integers: {item!r}"
            raise argparse.ArgumentTypeError(message) from None
        if sizes is not None and (not sizes or min(sizes) < 1):
            raise argparse.ArgumentTypeError(f"batch sizes must be >= 1: {item!r}")
        out.append((name, sizes))
    return out


def _steps(text: str) -> tuple[int, ...]:
    steps = int_list(text)
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return tuple(steps)


def _sections(text: str) -> tuple[str, ...]:
    from tokenizers_vis.benchmark.runner import OPTIONAL_SECTIONS, section_names

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = sorted(set(names) - {*section_names(), *OPTIONAL_SECTIONS})
    if unknown or not names:
        known = ", ".join([*section_names(), *OPTIONAL_SECTIONS])
        raise argparse.ArgumentTypeError(f"unknown sections {unknown}; known: {known}")
    return names


# (option, config field, type, help); None = keep the (full or quick) default.
OPTIONS = [
    ("--warmup", "warmup", int, "untimed calls before each timing"),
    ("--repeats", "repeats", positive, "timed calls; the median is reported"),
    ("--threads", "threads", positive, "torch intra-op threads (default: torch's)"),
    ("--peak-n", "peak_n", positive, "matmul side for the peak (default 2048 CPU, 8192 GPU)"),
    ("--decode-steps", "decode_steps", _steps, "a sampling decoder's steps in `tokenizers`"),
    ("--rf-model", "rf_model", str, "tokenizer with a rectified-flow decoder for `rf`"),
    ("--rf-steps", "rf_steps", _steps, "numbers of steps for `rf` (default 2,4,8,25)"),
    ("--rf-batch", "rf_batch", positive, "batch size for `rf`"),
    ("--codec-model", "codec_model", str, "model for `codec` (default emoji32)"),
    ("--codec-files", "codec_files", positive, "number of files for `codec`"),
    ("--train-model", "train_model", str, "preset for `training` (default emoji32_fsq)"),
    ("--train-batch", "train_batch", positive, "training batch size"),
    ("--train-steps", "train_steps", positive, "timed training steps"),
    ("--train-warmup", "train_warmup", int, "untimed training steps first"),
    ("--inception-images", "inception_images", positive, "images per Inception timing"),
    ("--inception-batch", "inception_batch", positive, "Inception batch of the reference path"),
    ("--inception-batches", "inception_batches", _steps, "other Inception batch sizes to try"),
    ("--inception-threads", "inception_threads", _steps, "other thread counts to try"),
    ("--reference-titok", "reference_titok", str, "1d-tokenizer checkout for `reference`"),
    ("--reference-batch", "reference_batch", positive, "batch size for `reference`"),
]


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="vistok bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run, tiny models")
    p.add_argument("--out", default="reports", help="folder for the reports (default reports/)")
    p.add_argument("--sections", type=_sections, help="comma-separated (default: all)")
    p.add_argument("--device", default="auto", help="auto (CPU, and GPU if any), cpu, cuda, ...")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument(
        "--models",
        type=model_list,
        help="tokenizers for `tokenizers`: presets or pretrained, NAME[@B1+B2]",
    )
    p.add_argument("--batches", type=_steps, help="batch sizes of --models without @ (1,64)")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory measurements")
    add_limit_flags(p)  # loading pretrained --models (and the sections' pretrained models)
    for flag, _, kind, help_ in OPTIONS:
        p.add_argument(flag, type=kind, help=help_)
    for section in _installed_sections():
        for opt in section.cli_options:
            p.add_argument(opt.flag, type=opt.type, dest=f"{section.name}.{opt.key}", help=opt.help)
    return p


def _installed_sections() -> list:
    """The installed sections whose options the parser offers (one that fails to import is
    left out here and reported as failed when it runs)."""
    from tokenizers_vis.benchmark.runner import SECTIONS
    from tokenizers_vis.benchmark.sections import load_section, plugin_names

    found = []
    for name in plugin_names(SECTIONS):
        try:
            found.append(load_section(name))
        except Exception:  # the run records why, as that section's failure
            continue
    return found


def _section_options(args: argparse.Namespace) -> dict[str, dict]:
    """{section: {option: value}} of the installed sections' flags that were given."""
    out: dict[str, dict] = {}
    for dest, value in vars(args).items():
        section, dot, key = dest.partition(".")
        if dot and value is not None:
            out.setdefault(section, {})[key] = value
    return out


def bench(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from tokenizers_vis.benchmark import BenchConfig
    from tokenizers_vis.benchmark import run as run_bench

    changes = {"devices": args.device, "precision": args.precision, "memory": not args.no_memory}
    changes |= {f: getattr(args, f) for _, f, _, _ in OPTIONS if getattr(args, f) is not None}
    if args.sections:
        changes["sections"] = args.sections
    changes["section_options"] = _section_options(args)
    changes["limits"] = limits_from_args(args)
    if args.models:
        default = args.batches or (1, 64)
        changes["models"] = tuple((name, sizes or default) for name, sizes in args.models)
    elif args.batches:
        base = BenchConfig.quick_config() if args.quick else BenchConfig()
        changes["models"] = tuple((name, args.batches) for name, _ in base.models)
    cfg = BenchConfig.quick_config(**changes) if args.quick else BenchConfig(**changes)
    run_bench(cfg, args.out, shlex.join(["vistok", "bench", *argv]))  # DeviceError: a bad --device
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `vistok bench`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(lambda: bench(argv), "vistok bench")


if __name__ == "__main__":
    raise SystemExit(main())
