"""Long fuzz campaigns over vistok's readers, run before a release (the suite runs a short one:
tests/test_fuzz.py).

    python tools/fuzz.py                                   # 20,000 cases, seed 0
    python tools/fuzz.py --cases 200000 --seed 3 --time 3600 --out fuzz-findings/
    python tools/fuzz.py --only vtoks --cases 50000        # targets whose name contains "vtoks"
    python tools/fuzz.py --atheris --fix-crc --only vtok/tiny/bitpack -- -max_total_time=600

Targets (`tokenizers_vis.fuzz.suite`): `.vtok` files of a random tiny tokenizer (bit-packed,
static table, a random GPT's range coding; tile and resize layouts) and of the shipped emoji32;
`.vtoks` containers (versions 1 and 2, hostile names); the JSON of pretrained directories
(tokenizer, static table, GPT). Each case runs under a hard time limit and memory cap. Prints a
summary per target and, per failure class, its smallest reproducer in hex (and with --out, one
file per class plus `findings.json`). Exit status 1 when anything failed.

--atheris hands one target's bytes to atheris (coverage-guided; `pip install atheris`, not a
dependency of vistok): its inputs are the file's bytes, its crashes anything but a VistokError.
Reproduce a failure with `--cases 1 --first CASE --seed SEED --only TARGET`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _instrumented_imports(atheris: Any | None) -> Any:
    """vistok's modules, imported under atheris' coverage instrumentation when it is given
    (only these: instrumenting torch too takes minutes)."""
    scope = (
        atheris.instrument_imports(include=["tokenizers_vis", "generation"])
        if atheris is not None
        else contextlib.nullcontext()
    )
    with scope:
        import generation.entropy  # noqa: F401  (the GPT entropy model, found by entry point)
        import tokenizers_vis.fuzz.suite as suite
    return suite


def _gpt_dir(work: Path) -> Path:
    """A random-weight tiny GPT over the tiny tokenizer's ids, as an entropy model directory."""
    from generation import GPT, gpt_spec

    torch.manual_seed(0)
    gpt = GPT(**gpt_spec("gpt_tiny", {"vocab_sizes": [125], "max_tokens": 8, "num_classes": 3}))
    with torch.no_grad():
        for out in gpt.eval().outputs:
            out.weight.normal_(std=0.5)
    return gpt.save_pretrained(work / "gpt", extra={"tokenizer": "tiny_cpu_fsq"})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first", type=int, default=0, help="index of the first case (reproduce one)")
    p.add_argument("--time", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--case-seconds", type=float, default=10.0, help="hard limit of one case")
    p.add_argument("--case-mib", type=int, default=512, help="memory one case may add (MiB)")
    p.add_argument("--only", action="append", default=[], help="targets whose name contains it")
    p.add_argument("--no-shipped", action="store_true", help="leave out emoji32 (faster)")
    p.add_argument("--no-gpt", action="store_true", help="leave out the GPT-coded targets")
    p.add_argument("--out", type=Path, help="write each failure class's reproducer here")
    p.add_argument("--atheris", action="store_true", help="coverage-guided, one target")
    p.add_argument("--fix-crc", action="store_true", help="atheris: fix each input's CRC-32")
    p.add_argument("atheris_args", nargs="*", help="after --: arguments for atheris")
    return p


def _write_findings(report: Any, out: Path) -> None:
    from tokenizers_vis.atomic import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    doc = []
    for n, group in enumerate(report.classes().values()):
        first = group[0]
        name = f"{n:03d}-{first.target.replace('/', '_')}-{first.kind}-{first.error}.bin"
        atomic_write(out / name, first.data)
        doc.append(
            {
                "file": name, "target": first.target, "kind": first.kind, "error": first.error,
                "where": first.where, "message": first.message, "cases": len(group),
                "seed": first.seed, "case": first.case, "note": first.note,
            }
        )  # fmt: skip
    atomic_write(out / "findings.json", (json.dumps(doc, indent=1) + "\n").encode())


def _run_atheris(atheris: Any, target: Any, args: argparse.Namespace, work: Path) -> None:
    from tokenizers_vis.errors import VistokError
    from tokenizers_vis.fuzz import Case, Usage, fix_crc, guarded

    corpus = work / "corpus"  # the target's honest inputs start the corpus
    corpus.mkdir()
    for i, seed in enumerate(target.extra.get("seeds", [])):
        (corpus / f"seed{i}").write_bytes(seed)

    def one_input(data: bytes) -> None:
        usage = Usage()
        try:  # the same budgets as a campaign: a bomb fails fast instead of taking the machine
            with guarded(args.case_seconds, args.case_mib << 20, usage):
                target.run(Case(fix_crc(data) if args.fix_crc else data))
        except VistokError:
            pass
        if usage.peak_bytes > args.case_mib << 20:
            raise MemoryError(f"peak {usage.peak_bytes >> 20} MiB")

    extra = list(args.atheris_args)
    if args.out is not None and not any(a.startswith("-artifact_prefix") for a in extra):
        args.out.mkdir(parents=True, exist_ok=True)
        extra.append(f"-artifact_prefix={args.out}/")  # crash files there, not in the cwd
    atheris.Setup([sys.argv[0], *extra, str(corpus)], one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(1)
    atheris = None
    if args.atheris:
        try:
            import atheris
        except ImportError:
            raise SystemExit("--atheris needs atheris: pip install atheris") from None
    suite = _instrumented_imports(atheris)
    from tokenizers_vis.fuzz import run_campaign

    with tempfile.TemporaryDirectory(prefix="vistok-fuzz-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        gpt = {} if args.no_gpt else {"gpt": _gpt_dir(work)}
        targets = suite.build_targets(work, gpt, shipped=not args.no_shipped)
        if args.only:
            targets = [t for t in targets if any(o in t.name for o in args.only)]
        if not targets:
            raise SystemExit("no target matches --only")
        print(f"targets built in {time.perf_counter() - start:.1f} s: "
              + ", ".join(t.name for t in targets), flush=True)  # fmt: skip
        if args.atheris:
            _run_atheris(atheris, targets[0], args, work)
            return 0

        def progress(i: int, report: Any) -> None:
            if (i + 1) % 1000 == 0:
                print(f"  {i + 1} cases, {len(report.failures)} failed", flush=True)

        report = run_campaign(
            targets, args.cases, seed=args.seed, case_seconds=args.case_seconds,
            case_bytes=args.case_mib << 20, total_seconds=args.time, progress=progress,
            first=args.first,
        )  # fmt: skip
    print(report.summary(reproducers=3, max_hex=4096))
    if args.out is not None and report.failures:
        _write_findings(report, args.out)
        print(f"reproducers in {args.out}/")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
