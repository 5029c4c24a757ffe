"""The page's generation tab: a grid of GPT samples, through the `sample` plug-in command.

The GPT lives in the `generation` package, which `tokenizers_vis` never imports. As `vistok
demo` does, the page finds `vistok sample` among the `vistok.commands` entry points and calls
its `main(argv)`, one call per class row (so the progress bar moves per row and a cancel stops
at once: the job hook raises inside the GPT's next layer). What the GPT is (its classes, its K)
comes from the codec's entropy-model loader, the other plug-in interface `generation` fills.
Sample files go to a folder inside the server's temporary directory and are deleted once read.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tokenizers_vis.limits import DEFAULT_LIMITS, Limits
from tokenizers_vis.serve.images import PageError
from tokenizers_vis.serve.jobs import Job
from tokenizers_vis.serve.views import png_data_url

__all__ = ["Generator"]

# `main` writes its errors to stderr: captured per call (redirect_stderr is process-wide).
_STDERR_LOCK = threading.Lock()
MAX_SAMPLES = 16  # per row


class Generator:
    """GPT samples for the page.

    Args:
        gpt: a shipped GPT's name or a pretrained GPT directory (`vistok sample --gpt`).
        workdir: the server's temporary directory.
        limits: input limits for loading the GPT, here and in each `vistok sample` run.
    """

    def __init__(self, gpt: str, workdir: Path, limits: Limits | None = None) -> None:
        self.gpt, self.workdir = gpt, workdir
        self.limits = limits or DEFAULT_LIMITS
        self.info: dict[str, Any] = {"available": False, "gpt": gpt}
        self._main = None
        try:
            from tokenizers_vis.cli.main import commands
            from tokenizers_vis.codec import load_entropy_model

            table = commands()
            if "sample" not in table:
                self.info["reason"] = "the `generation` package is not installed (no `sample`)"
                return
            model = load_entropy_model(gpt, self.limits)
            self._main = importlib.import_module(table["sample"][0]).main
        except (ImportError, ValueError) as err:
            self.info["reason"] = f"--gpt {gpt}: {' '.join(str(err).split())}"
            return
        self.info.update(
            available=True, classes=list(model.class_names), max_tokens=int(model.max_tokens)
        )

    def check(self, label: str, k: int, n: int) -> None:
        if not self.info["available"]:
            raise PageError(f"generation is unavailable: {self.info['reason']}")
        if label != "all" and label not in self.info["classes"]:
            raise PageError(f"unknown class {label!r}; known: {', '.join(self.info['classes'])}")
        if not 1 <= k <= self.info["max_tokens"]:
            raise PageError(f"k must be in 1..{self.info['max_tokens']} for this GPT, got {k}")
        if not 1 <= n <= MAX_SAMPLES:
            raise PageError(f"samples per class must be in 1..{MAX_SAMPLES}, got {n}")

    def run(self, job: Job, label: str, guidance: float, k: int, n: int, seed: int) -> dict:
        """Sample `n` images of each class (`label`, or every class for "all") -> the grid."""
        self.check(label, k, n)
        classes = self.info["classes"] if label == "all" else [label]
        rows: list[dict[str, Any]] = []
        folder = Path(tempfile.mkdtemp(prefix="gpt-", dir=self.workdir))
        try:
            for i, name in enumerate(classes):
                job.progress(i / len(classes), f"sampling {name} ({i + 1} of {len(classes)})")
                images = self._row(folder / f"row{i}", name, guidance, k, n, seed + i)
                rows.append({"class": name, "images": [png_data_url(im) for im in images]})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return {"rows": rows, "k": k, "guidance": guidance, "seed": seed, "gpt": self.gpt}

    def _row(self, out: Path, name: str, guidance: float, k: int, n: int, seed: int):
        argv = ["--gpt", self.gpt, "--class", name, "--num-tokens", str(k), "--n", str(n)]
        argv += ["--seed", str(seed), "--grid-cols", str(n), "--quiet", "-o", str(out)]
        if guidance != 1.0:
            argv += ["--cfg", f"{guidance:g}"]
        argv += _limit_argv(self.limits)
        err = io.StringIO()
        with (
            _STDERR_LOCK,
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            code = self._main(argv)
        if code != 0:
            raise PageError(f"vistok sample failed: {' '.join(err.getvalue().split())}")
        with np.load(out / "samples.npz", allow_pickle=False) as z:
            samples = z["samples"]  # (n h w 3) uint8
        return [Image.fromarray(s) for s in samples]


def _limit_argv(limits: Limits) -> list[str]:
    """The `vistok sample` flags that give it the model limits the server loaded its GPT under
    (`cli.common.limits_from_args` maps them back to the same `Limits`)."""
    flags = (
        ("--max-config-bytes", limits.max_json_bytes, DEFAULT_LIMITS.max_json_bytes),
        ("--max-parameters", limits.max_parameters, DEFAULT_LIMITS.max_parameters),
        ("--max-memory", limits.max_work_bytes >> 20, DEFAULT_LIMITS.max_work_bytes >> 20),
    )
    return [
        part for flag, value, default in flags if value != default for part in (flag, str(value))
    ]
