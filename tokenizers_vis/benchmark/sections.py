"""Sections other packages add to `vistok bench`, found through entry points.

`tokenizers_vis` never imports `generation`, yet `vistok bench` measures the GPT: `generation`
declares a `BenchSection` under the `vistok.bench_sections` entry-point group (pyproject.toml,
name = the section, value = "package.module:OBJECT"), as its commands join `vistok` through
`vistok.commands`. Any package can add a section the same way:

    [project.entry-points."vistok.bench_sections"]
    gpt = "generation.bench:SECTION"

A section's options live with it: full-run defaults, what `--quick` changes, and the `vistok
bench` flags that set them; `BenchConfig.section_options[name]` overrides them in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from tokenizers_vis.benchmark.common import Context

ENTRY_POINT_GROUP = "vistok.bench_sections"

__all__ = ["ENTRY_POINT_GROUP", "BenchSection", "CliOption", "load_section", "plugin_names"]


@dataclass(frozen=True)
class CliOption:
    """A `vistok bench` flag that sets one of a section's options (None: keep the default)."""

    flag: str
    key: str
    type: Callable[[str], Any]
    help: str


@dataclass(frozen=True)
class BenchSection:
    """A benchmark section: `run(ctx, options)` returns {"records": [...], "notes": [...], ...};
    every record should be `ctx.stamp(...)`-ed (machine, precision, torch, threads).

    Attributes:
        name: the section's name in `--sections` and in the report (the entry point's name).
        title: its heading in the Markdown report.
        run: the measurement.
        columns: (record key, header) of the Markdown table.
        options: full-run defaults of `run`'s options.
        quick_options: what a `--quick` run changes (test-sized models, seconds).
        cli_options: flags that set options from the command line.
    """

    name: str
    title: str
    run: Callable[[Context, dict[str, Any]], dict[str, Any]]
    columns: tuple[tuple[str, str], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    quick_options: Mapping[str, Any] = field(default_factory=dict)
    cli_options: tuple[CliOption, ...] = ()

    def resolved_options(self, quick: bool, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults, then the quick run's changes, then `overrides` (unknown keys refused)."""
        unknown = sorted(set(overrides) - set(self.options))
        if unknown:
            raise ValueError(f"section {self.name}: unknown options {unknown}; "
                             f"known: {', '.join(self.options)}")  # fmt: skip
        return {**self.options, **(self.quick_options if quick else {}), **overrides}


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def plugin_names(builtin: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Names of the installed sections, without importing them; a name that clashes with a
    built-in section is ignored (plug-ins add, never replace)."""
    return tuple(sorted(name for name in _entry_points() if name not in builtin))


def load_section(name: str) -> BenchSection:
    """Import the section installed under `name`.

    Raises:
        KeyError: no such entry point.
        TypeError: the entry point is not a `BenchSection` of that name.
    """
    section = _entry_points()[name].load()
    if not isinstance(section, BenchSection) or section.name != name:
        raise TypeError(f"entry point {name!r} of {ENTRY_POINT_GROUP!r} is not its BenchSection")
    return section
