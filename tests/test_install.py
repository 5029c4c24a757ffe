"""`pip install .` into a clean virtualenv: the distribution adds `tokenizers_vis` and
`generation` and no top-level `tools` package, and the `vistok` script works.

Offline: the new venv sees this environment's installed dependencies through a path entry
(so nothing is downloaded) and builds vistok with the setuptools already installed here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = (".venv", ".git", "out", "runs", "build", "dist", "*.egg-info", "__pycache__", "data_cache")


def test_clean_install_has_no_tools_package_and_a_working_cli(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*SKIP))
    venv = tmp_path / "venv"
    # No pip of its own (ensurepip's setuptools would shadow ours): this pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # Dependencies (torch, timm, ...) from this environment, as a plain path entry: its own
    # .pth files (our editable install's finder among them) are not run from there.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps"]
    pip += ["--no-build-isolation", "--no-index"]
    subprocess.run([*pip, str(src)], check=True, capture_output=True, text=True)
    installed = {p.name for p in site.iterdir()}
    assert {"tokenizers_vis", "generation"} <= installed
    assert "tools" not in installed
    result = subprocess.run(
        [venv / "bin" / "vistok", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    for command in ("encode", "decode", "eval", "train", "data", "sample", "pretokenize"):
        assert f"  {command} " in result.stdout
    where = subprocess.run(
        [py, "-c", "import tokenizers_vis, sys; print(tokenizers_vis.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    ).stdout  # fmt: skip
    assert str(site) in where  # the installed copy, not this checkout
