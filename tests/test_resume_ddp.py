"""Kill -9 and resume, and two-process DDP over gloo, run the way users run them:
`python -m tokenizers_vis.cli train fit ...` in a subprocess (Lightning launches the DDP ranks
itself).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import lightning as L
import pytest
import torch

from tokenizers_vis.cli import train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("tokenizer/tiny_cpu_fsq.yaml", "data/emoji16.yaml", "trainer/test.yaml")
STEPS = 40
RUN = f"--trainer.max_steps {STEPS} --data.batch_size 8 --trainer.limit_val_batches 0"


pytestmark = pytest.mark.usefixtures("one_thread")


def fit_args(root: Path, overrides: str = "") -> list[str]:
    args = ["fit"]
    for config in CONFIGS:
        args += ["--config", str(REPO / "configs" / config)]
    args += ["--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir"]
    return [*args, str(root), *overrides.split()]


def spawn(root: Path, overrides: str) -> subprocess.Popen:
    """`python -m tokenizers_vis.cli train fit ...` with output in `root/out.log`."""
    root.mkdir(parents=True, exist_ok=True)
    # tests/ on the path for RankProbe (a site-packages `tests` package shadows ours as a package).
    paths = [str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env["OMP_NUM_THREADS"] = "1"  # see _one_thread; DDP ranks get one thread each anyway
    command = [sys.executable, "-m", "tokenizers_vis.cli", "train", *fit_args(root, overrides)]
    with open(root / "out.log", "wb") as log:  # own session: kill_all reaches the DDP ranks too
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL the process group `spawn` started (the launcher and any rank it launched)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def fit_in_process(root: Path, overrides: str = "") -> None:
    with mock.patch.object(sys, "argv", ["vistok"]):
        assert train.main(fit_args(root, overrides)) == 0


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def losses(run: Path) -> dict[int, float]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r["train/loss"]}


def adam_steps(ckpt: dict) -> set[int]:
    return {int(state["step"]) for state in ckpt["optimizer_states"][0]["state"].values()}


def wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"exited before it was killed:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


class Park(L.Callback):
    """Parks the run after its first checkpoint (step 10), so that SIGKILL lands at a known step
    however slow or fast the machine is. Loaded with `--trainer.callbacks+=test_resume_ddp.Park`."""

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == 10:
            time.sleep(600)


class BatchLog(L.Callback):
    """A digest of every training batch by global step, written to `<root>/batches.json` when
    training ends (the killed run never gets there). Loaded with
    `--trainer.callbacks+=test_resume_ddp.BatchLog`.
    """

    def __init__(self) -> None:
        self.digests: dict[int, str] = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: Any, *args: Any
    ) -> None:
        self.digests[trainer.global_step] = digest(batch[0])

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        (Path(trainer.default_root_dir) / "batches.json").write_text(json.dumps(self.digests))


def batches(root: Path) -> dict[int, str]:
    return {int(step): d for step, d in json.loads((root / "batches.json").read_text()).items()}


def test_kill_and_resume_continues_the_run(tmp_path: Path) -> None:
    root = tmp_path / "run"
    proc = spawn(root, f"{RUN} --trainer.callbacks+=test_resume_ddp.Park")
    ckpt_path = root / "checkpoints" / "last.ckpt"  # VistokCLI: <default_root_dir>/checkpoints
    try:
        wait_for(ckpt_path, proc, root / "out.log")  # written atomically at step 10
    finally:
        kill_all(proc)
    assert proc.returncode == -signal.SIGKILL
    killed = load(ckpt_path)
    step = killed["global_step"]
    assert step == 10
    assert adam_steps(killed) == {step}
    assert killed["lr_schedulers"][0]["last_epoch"] == step

    # Resume the way a user would: same directory, `--ckpt_path last` (a new logger version).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_in_process(
            root, f"{RUN} --ckpt_path last --trainer.callbacks+=test_resume_ddp.BatchLog"
        )
    # The train loader is resumable, so Lightning's "resuming mid-epoch" warning is gone.
    assert not [w for w in caught if "not resumable" in str(w.message)]
    resumed_run = root / "logs" / "version_1"
    final = load(ckpt_path)
    assert final["global_step"] == STEPS
    # Optimizer, schedule and EMA continued from the checkpoint, not from scratch.
    assert adam_steps(final) == {STEPS}
    assert final["lr_schedulers"][0]["last_epoch"] == STEPS
    assert int(final["averaging_state"]["n_averaged"]) == STEPS
    resumed = losses(resumed_run)
    assert sorted(resumed) == list(range(step, STEPS))  # step numbering continues

    # The same run without the kill.
    fit_in_process(tmp_path / "straight", f"{RUN} --trainer.callbacks+=test_resume_ddp.BatchLog")
    straight_run = tmp_path / "straight" / "logs" / "version_0"
    straight = losses(straight_run)
    assert load(tmp_path / "straight" / "checkpoints" / "last.ckpt")["global_step"] == STEPS
    assert sorted(straight) == list(range(STEPS))
    # The data continues mid-epoch: from its first step on, the resumed run trains on exactly the
    # batches the uninterrupted run trained on at those steps.
    resumed_batches, straight_batches = batches(root), batches(tmp_path / "straight")
    assert sorted(resumed_batches) == list(range(step, STEPS))
    assert resumed_batches == {s: straight_batches[s] for s in range(step, STEPS)}
    assert len(set(straight_batches.values())) == STEPS  # (a new batch every step)
    # The generators (token drop's prefix lengths) travel in the checkpoint (`RandomState`), so
    # the resumed steps are the uninterrupted run's steps: same batches, same k, same losses.
    assert "vistok_random_state" in killed
    first = [resumed[s] for s in range(step, step + 5)]
    fresh = [straight[s] for s in range(5)]
    assert sum(first) < 0.85 * sum(fresh), (first, fresh)
    for s in range(step, STEPS):
        assert resumed[s] == pytest.approx(straight[s], rel=1e-5, abs=1e-7), s


class RankProbe(L.Callback):
    """Per rank: a fingerprint of every training batch and of the VQ codebook after every step.

    Loaded by the DDP subprocesses from `--trainer.callbacks+=test_resume_ddp.RankProbe`.
    """

    def __init__(self) -> None:
        self.batches: list[list[str]] = []  # per step, one digest per image
        self.codebooks: list[str] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        quantizer = pl_module.tokenizer.quantizer
        self.batches.append([digest(image) for image in batch[0]])
        buffers = (quantizer.codebook, quantizer.ema_count, quantizer.ema_sum)
        self.codebooks.append("".join(digest(b) for b in buffers))

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        path = Path(trainer.default_root_dir) / f"probe_rank{trainer.global_rank}.pt"
        torch.save({"batches": self.batches, "codebooks": self.codebooks}, path)


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha1(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def test_ddp_two_processes_gloo(tmp_path: Path) -> None:
    overrides = (
        "--model.tokenizer tiny_cpu_vq --trainer.strategy ddp --trainer.devices 2 "
        "--trainer.accelerator cpu --trainer.max_steps 4 --trainer.val_check_interval 4 "
        "--trainer.callbacks+=test_resume_ddp.RankProbe"
    )
    proc = spawn(tmp_path, overrides)
    try:
        proc.wait(timeout=180)  # a collective called on one rank only hangs: fail instead
    except subprocess.TimeoutExpired:
        kill_all(proc)
        raise
    log = (tmp_path / "out.log").read_text()
    assert proc.returncode == 0, log[-5000:]
    probes = [load(tmp_path / f"probe_rank{rank}.pt") for rank in (0, 1)]
    assert all(len(p["batches"]) == 4 for p in probes)
    # DistributedSampler: each rank gets its own shard of every epoch.
    seen = [{image for batch in p["batches"] for image in batch} for p in probes]
    assert len(seen[0]) == len(seen[1]) == 4 * 16
    assert not seen[0] & seen[1]
    # EMA codebook statistics are all-reduced: the ranks hold one codebook after every step.
    assert probes[0]["codebooks"] == probes[1]["codebooks"]
    assert len(set(probes[0]["codebooks"])) == 4  # and it did move
    run = tmp_path / "logs" / "version_0"
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 4
    # Codebook usage counted both ranks' validation batches (16 images x 8 tokens each).
    usage = json.loads((run / "usage" / "step_0000004.json").read_text())
    assert usage["num_tokens"] == 2 * 16 * 8
