"""What a benchmark run measures (`BenchConfig`, full and `--quick`) and the run itself: every
selected section on every device, one report per device.

The built-in sections are `SECTIONS`; installed packages add theirs through the
`vistok.bench_sections` entry points (`sections.py`), after the built-in ones."""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenizers_vis.benchmark.common import Context, device_name, environment, slug
from tokenizers_vis.benchmark.report import write_report
from tokenizers_vis.benchmark.sections import load_section, plugin_names
from tokenizers_vis.limits import DEFAULT_LIMITS, Limits
from tokenizers_vis.precision import pick_device, resolve_precision

SECTIONS = ("peak", "tokenizers", "rf", "codec", "training", "inception")  # built in
# Run only when asked for (`--sections reference`, or `--reference-titok DIR` given): they need
# code from outside vistok.
OPTIONAL_SECTIONS = ("reference",)
NEEDS_PEAK = {"peak", "tokenizers", "rf", "inception"}  # report fractions of the peak
TINY_RF = {"decoder": {"name": "rectified_flow", "patch_size": 4, "width": 32, "depth": 1,
                       "num_heads": 2}}  # fmt: skip


@dataclass
class BenchConfig:
    """Everything a run measures; the defaults are the full run (see `quick` for the smoke run).

    `models` lists (tokenizer, batch sizes): preset names build fresh weights, other names load
    a pretrained directory or shipped model (`emoji32`). Repeat counts apply to every timing:
    `warmup` untimed calls, then the median of `repeats`.
    """

    sections: tuple[str, ...] | None = None  # None: every section, built-in and installed
    devices: str = "auto"  # "auto": the CPU, and the GPU too when CUDA is available
    precision: str = "auto"
    threads: int | None = None
    warmup: int = 1
    repeats: int = 3
    memory: bool = True
    quick: bool = False
    peak_n: int | None = None  # matmul side; None: 2048 on CPU, 8192 on GPU
    models: tuple[tuple[str, tuple[int, ...]], ...] = (
        ("tiny_cpu_fsq", (1, 64)), ("emoji32", (1, 64)), ("emoji32_fsq_rf", (1, 64)),
        ("vit_b16_k64_vq", (1, 4)),
    )  # fmt: skip
    decode_steps: tuple[int, ...] = (4, 25)  # a sampling decoder's steps in `tokenizers`
    rf_model: str = "emoji32_fsq_rf"
    rf_overrides: dict[str, Any] = field(default_factory=dict)
    rf_steps: tuple[int, ...] = (2, 4, 8, 25)
    rf_batch: int = 16
    codec_model: str = "emoji32"
    codec_files: int = 64
    train_model: str = "emoji32_fsq"
    train_batch: int = 64
    train_steps: int = 8
    train_warmup: int = 2
    train_data: str = "emoji"
    inception_images: int = 32
    inception_batch: int = 32  # the evaluation's default batch size
    inception_batches: tuple[int, ...] = (8, 16)
    inception_grad_modes: tuple[str, ...] = ("no_grad", "inference_mode")
    inception_threads: tuple[int, ...] = ()
    # Options of sections added through entry points: {section: {option: value}}, over the
    # section's own defaults (and its quick-run changes).
    section_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference_titok: str | None = None  # a bytedance/1d-tokenizer checkout (or $VISTOK_TITOK_...)
    reference_batch: int = 4
    limits: Limits = DEFAULT_LIMITS  # for loading pretrained `models` / `codec_model` ...

    @classmethod
    def quick_config(cls, **changes: Any) -> BenchConfig:
        """A seconds-long smoke run of every section on test-sized models."""
        quick = cls(
            quick=True, warmup=1, repeats=1, peak_n=256, models=(("tiny_cpu_fsq", (1, 64)),),
            decode_steps=(2,), rf_model="tiny_cpu_fsq", rf_overrides=TINY_RF, rf_steps=(1, 2),
            rf_batch=2, codec_model="tiny_cpu_fsq", codec_files=4, train_model="tiny_cpu_fsq",
            train_batch=4, train_steps=2, train_warmup=1, train_data="synthetic",
            inception_images=1, inception_batch=1, inception_batches=(),
            inception_grad_modes=("no_grad",), reference_batch=1,
        )  # fmt: skip
        return dataclasses.replace(quick, **changes)


def section_names() -> tuple[str, ...]:
    """Every section `vistok bench` knows: the built-in ones, then the installed ones."""
    return SECTIONS + plugin_names(SECTIONS)


def section_runners(cfg: BenchConfig) -> dict[str, Callable[[Context], dict[str, Any]]]:
    """Each built-in section's call (imported when it runs: training needs Lightning)."""

    def peak(ctx: Context) -> dict[str, Any]:
        from tokenizers_vis.benchmark.peak import run_peak

        return run_peak(ctx, peak_size(cfg, ctx.device))

    def tokenizers(ctx: Context) -> dict[str, Any]:
        from tokenizers_vis.benchmark.tokenizers import run_tokenizers

        return run_tokenizers(ctx, list(cfg.models), cfg.decode_steps, cfg.memory)

    def rf(ctx: Context) -> dict[str, Any]:
        from tokenizers_vis.benchmark.tokenizers import run_rf_steps

        return run_rf_steps(ctx, cfg.rf_model, cfg.rf_steps, cfg.rf_batch, cfg.rf_overrides)

    def codec(ctx: Context) -> dict[str, Any]:
        from tokenizers_vis.benchmark.codec import run_codec

        return run_codec(ctx, cfg.codec_model, cfg.codec_files)

    def training(ctx: Context) -> dict[str, Any]:
        from tokenizers_vis.benchmark.training import run_training

        return run_training(ctx, cfg.train_model, cfg.train_batch, cfg.train_steps,
                            cfg.train_warmup, cfg.train_data)  # fmt: skip

    def inception(ctx: Context) -> dict[str, Any]:
        from tokenizers_vis.benchmark.inception import run_inception

        return run_inception(ctx, cfg.inception_images, cfg.inception_batch,
                             cfg.inception_batches, cfg.inception_grad_modes,
                             cfg.inception_threads)  # fmt: skip

    def reference(ctx: Context) -> dict[str, Any]:
        from tokenizers_vis.benchmark.reference import run_reference

        return run_reference(ctx, cfg.reference_titok, cfg.reference_batch)

    return {"peak": peak, "tokenizers": tokenizers, "rf": rf, "codec": codec,
            "training": training, "inception": inception, "reference": reference}  # fmt: skip


def run_plugin(cfg: BenchConfig, name: str, ctx: Context) -> dict[str, Any]:
    """An installed section, imported when it runs; its title, table columns and the options
    it ran with go into the report."""
    section = load_section(name)
    options = section.resolved_options(cfg.quick, cfg.section_options.get(name, {}))
    result = section.run(ctx, options)
    return {"title": section.title, "columns": [list(c) for c in section.columns],
            "options": options, **result}  # fmt: skip


def peak_size(cfg: BenchConfig, device: torch.device) -> int:
    return cfg.peak_n or (8192 if device.type == "cuda" else 2048)


def devices(spec: str) -> list[torch.device]:
    """ "auto" -> the CPU and, when CUDA is available, the GPU; else a comma-separated list."""
    if spec == "auto":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    return [pick_device(name.strip()) for name in spec.split(",") if name.strip()]


def _log(message: str) -> None:
    print(f"[vistok bench] {message}", file=sys.stderr, flush=True)


def run_device(cfg: BenchConfig, device: torch.device, command: str) -> dict[str, Any]:
    """Every selected section on `device`; a failing section is recorded, the others still run."""
    known = [*section_names(), *OPTIONAL_SECTIONS]
    selected = section_names() if cfg.sections is None else cfg.sections
    unknown = sorted(set(selected) - set(known))
    if unknown:
        raise ValueError(f"unknown sections {unknown}; known: {', '.join(known)}")
    choice = resolve_precision(cfg.precision, device)
    ctx = Context(device, choice, cfg.warmup, cfg.repeats, peak={}, limits=cfg.limits)
    if cfg.memory and device.type == "cpu" and "tokenizers" in selected:
        from tokenizers_vis.benchmark.memory import start_server

        start_server()  # its imports overlap with the first sections
    needs_peak = bool(NEEDS_PEAK & set(selected))
    asked = set(selected) | ({"reference"} if cfg.reference_titok else set())
    wanted = [s for s in known if s in asked or (s == "peak" and needs_peak)]
    runners = section_runners(cfg)
    started, results = time.perf_counter(), {}
    started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    for name in wanted:
        t0 = time.perf_counter()
        _log(f"{device}: {name} ...")
        try:
            if name in runners:
                results[name] = runners[name](ctx)
            else:
                results[name] = run_plugin(cfg, name, ctx)
        except Exception as err:  # one broken section must not lose an hour of the others
            results[name] = {"records": [], "error": f"{type(err).__name__}: {err}",
                             "traceback": traceback.format_exc()}  # fmt: skip
            _log(f"{device}: {name} failed: {err}")
        results[name]["seconds"] = time.perf_counter() - t0
        _log(f"{device}: {name} done in {results[name]['seconds']:.1f} s")
    if "error" not in results.get("peak", {"error": "not run"}) and len(wanted) > 1:
        from tokenizers_vis.benchmark.peak import remeasure_peak

        try:
            remeasure_peak(ctx, peak_size(cfg, device), results)
        except Exception as err:  # the first measurement stands
            _log(f"{device}: measuring the peak again failed: {err}")
    meta = environment() | {
        "device": str(device), "device_name": device_name(device), "precision": choice.name,
        "precision_reason": choice.reason, "quick": cfg.quick, "warmup": cfg.warmup,
        "repeats": cfg.repeats, "started": started_at,
        "wall_s": time.perf_counter() - started, "command": command,
        "config": dataclasses.asdict(cfg),
    }  # fmt: skip
    return {"meta": meta, "sections": results}


def report_stem(device: torch.device, quick: bool) -> str:
    """bench-<cpu-or-gpu-model-slug>, "-quick" for smoke runs (never over a real report)."""
    return f"bench-{slug(device_name(device))}" + ("-quick" if quick else "")


def run(cfg: BenchConfig, out: str | Path = "reports", command: str = "") -> list[Path]:
    """Run the benchmark on every device of `cfg.devices`; returns the JSON reports written."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    written = []
    for device in devices(cfg.devices):
        report = run_device(cfg, device, command)
        json_path, md_path = write_report(report, out, report_stem(device, cfg.quick))
        _log(f"wrote {json_path} and {md_path}")
        written.append(json_path)
    return written
