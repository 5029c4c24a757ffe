"""A seeded mutation campaign over `.vtok` files (bit-packed, static-table and GPT range coded;
tile and resize layouts), `.vtoks` containers and pretrained-directory JSON: only
`VistokError`s escape, nothing damaged is read silently, and every case stays within its time
and memory budget. Longer campaigns: `python tools/fuzz.py --cases 200000`."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch

from generation import GPT, gpt_spec
from tokenizers_vis.errors import VistokError
from tokenizers_vis.fuzz import Case, Target, mutate_bytes, mutate_json, run_campaign
from tokenizers_vis.fuzz.suite import build_targets

CASES = 2000
CASE_SECONDS = 5.0  # hard limit; honest cases take milliseconds
CASE_BYTES = 256 << 20  # what one case may add to the process (a hard cap and the budget)


@pytest.fixture(scope="session")
def targets(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    data = {"vocab_sizes": [125], "max_tokens": 8, "num_classes": 3}
    gpt = GPT(**gpt_spec("gpt_tiny", data)).eval()
    with torch.no_grad():
        for out in gpt.outputs:  # random, not zero-initialised: every probability is used
            out.weight.normal_(std=0.5)
    gpt_dir = gpt.save_pretrained(work / "gpt", extra={"tokenizer": "tiny_cpu_fsq"})
    return build_targets(work, {"gpt": gpt_dir})


def test_hostile_inputs_raise_only_vistok_errors_within_budget(targets, one_thread):
    start = time.perf_counter()
    report = run_campaign(
        targets, CASES, seed=0, case_seconds=CASE_SECONDS, case_bytes=CASE_BYTES,
        total_seconds=150.0,
    )  # fmt: skip
    print(report.summary(max_hex=256))
    print(f"campaign wall time {time.perf_counter() - start:.1f} s")
    names = {t.name for t in targets}
    assert set(report.stats) == names and len(names) >= 9
    for name, stats in report.stats.items():  # the campaign reaches past the first check
        assert stats.refused > 0 and stats.accepted > 0, (name, stats)
    assert not report.stopped_early and report.cases == CASES
    if report.failures:
        pytest.fail(report.summary(max_hex=256), pytrace=False)


def _target(run) -> Target:
    return Target("probe", lambda rng: Case(rng.randbytes(8)), run)


def test_the_harness_reports_every_kind_of_failure(one_thread):
    """The campaign can fail: a foreign exception, a silent acceptance, a case over its time
    and one over its memory are each reported; a VistokError is a refusal."""

    def refuse(case):
        raise VistokError("refused")

    def crash(case):
        raise KeyError("boom")

    def silent(case):
        raise AssertionError("read silently")

    def slow(case):
        while True:
            pass

    def hungry(case):
        np.ones(1 << 28)  # 2 GiB: over the cap, refused by the allocator at once

    runs = {"refuse": refuse, "crash": crash, "silent": silent, "slow": slow, "hungry": hungry}
    kinds = {}
    for name, run in runs.items():
        report = run_campaign([_target(run)], 1, case_seconds=0.3, case_bytes=64 << 20)
        kinds[name] = [(f.kind, f.error) for f in report.failures]
        assert report.stats["probe"].cases == 1
    assert kinds == {
        "refuse": [],
        "crash": [("exception", "KeyError")],
        "silent": [("silent", "AssertionError")],
        "slow": [("time", "CaseTimeout")],
        "hungry": [("memory", "MemoryError")],
    }
    report = run_campaign([_target(lambda case: None)], 3)
    assert report.stats["probe"].accepted == 3 and not report.failures


def test_cases_are_reproducible_from_seed_and_index():
    doc = {"tokenizer": {"width": 32, "levels": [5, 5, 5]}, "format_version": 1}
    for i in range(50):
        a, b = random.Random(f"0:t:{i}"), random.Random(f"0:t:{i}")
        assert mutate_bytes(a, b"VTOK" + bytes(40)) == mutate_bytes(b, b"VTOK" + bytes(40))
        assert mutate_json(a, doc) == mutate_json(b, doc)
