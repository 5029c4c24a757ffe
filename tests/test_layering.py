"""Imports point one way: `tokenizers_vis` never imports `generation`, and `generation` uses
only the public API of `tokenizers_vis` (`tokenizers_vis.PUBLIC_MODULES`), as any other
generative model would."""

from __future__ import annotations

import ast
from pathlib import Path

import tokenizers_vis

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> list[str]:
    """Every module `path` imports, at any depth (function-level imports too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_generation_uses_only_public_tokenizers_vis_modules():
    private = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "generation").rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] == "tokenizers_vis" and name not in tokenizers_vis.PUBLIC_MODULES
    }
    assert not private, sorted(private)


def test_public_modules_exist_and_tokenizers_vis_never_imports_generation():
    import importlib

    for name in tokenizers_vis.PUBLIC_MODULES:
        importlib.import_module(name)
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "tokenizers_vis").rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] == "generation"
    }
    assert not wrong, sorted(wrong)
