"""Fuzzing vistok's readers: a seeded mutation campaign over what strangers hand us — `.vtok`
files, `.vtoks` containers and pretrained-directory JSON — asserting that only the library's own
errors (`VistokError`) escape, that nothing damaged is read silently, and that every case stays
within a time and a memory budget.

    from tokenizers_vis.fuzz import run_campaign, vtok_target
    report = run_campaign([vtok_target("vtok", codec, seeds)], cases=1000, seed=0)
    print(report.summary())

`tests/test_fuzz.py` runs a few thousand cases in the suite; `tools/fuzz.py` runs long
campaigns (optionally under atheris) and prints each failure's reproducer.
"""

from tokenizers_vis.fuzz.campaign import Failure, Report, TargetStats, run_campaign
from tokenizers_vis.fuzz.guard import CaseTimeout, Usage, guarded
from tokenizers_vis.fuzz.mutate import HOSTILE_NAMES, fix_crc, mutate_bytes, mutate_json
from tokenizers_vis.fuzz.targets import (
    Case,
    Target,
    container_target,
    json_file_target,
    vtok_target,
)

__all__ = [
    "HOSTILE_NAMES",
    "Case",
    "CaseTimeout",
    "Failure",
    "Report",
    "Target",
    "TargetStats",
    "Usage",
    "container_target",
    "fix_crc",
    "guarded",
    "json_file_target",
    "mutate_bytes",
    "mutate_json",
    "run_campaign",
    "vtok_target",
]
