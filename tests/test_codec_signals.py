"""Ctrl-C (SIGINT) in another process running `vistok encode`: finished files stay whole, no
partial file is left, exit status 130.

The child is forked from the test process (as DataLoader workers are, with one intra-op thread)
rather than started afresh: a fresh interpreter spends 10-25 s importing torch and diffusers on a
busy 2-core machine, a fork none, and the signal path under test is the same.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from pathlib import Path

import torch
from PIL import Image

import tokenizers_vis as tv
from tokenizers_vis.cli.main import main as vistok
from tokenizers_vis.codec import read_header


def _child(argv: list[str], log: Path) -> None:
    """Run the command with stdout / stderr in `log`; never returns."""
    code = 99
    try:
        torch.set_num_threads(1)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = open(fd, "w", buffering=1)  # noqa: SIM115
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C -> KeyboardInterrupt
        code = vistok(argv)
        sys.stdout.flush()
    finally:
        os._exit(code)


def _wait(pid: int, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    return None


def test_sigint_mid_run_leaves_no_partial_output(tmp_path, one_thread):
    torch.manual_seed(0)
    model = tv.create_tokenizer("tiny_cpu_fsq").save_pretrained(tmp_path / "model")
    src, out, log = tmp_path / "src", tmp_path / "out", tmp_path / "log.txt"
    src.mkdir()
    for i in range(400):
        Image.new("RGB", (16, 16), (i % 256, 7, 7)).save(src / f"{i:03d}.png")
    argv = ["encode", str(src), "-o", str(out), "--model", str(model), "--batch-size", "1", "-q"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, fork() may ..."
        pid = os.fork()
    if pid == 0:
        _child(argv, log)
    status = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(out.glob("*.vtok")):
            time.sleep(0.002)
        os.kill(pid, signal.SIGINT)
        status = _wait(pid, 60)
    finally:
        if status is None:  # hung or never signalled: do not leave it behind
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    text = log.read_text()
    assert status == 130, text
    assert "interrupted (SIGINT)" in text and "Traceback" not in text
    written = sorted(out.iterdir())
    assert 0 < len(written) < 400
    assert all(p.suffix == ".vtok" for p in written)  # no temporary file left behind
    for path in written:
        read_header(path.read_bytes())  # complete, checksum intact
