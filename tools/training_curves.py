"""Training curves of a run for its model card: validation PSNR per k and train loss vs step
(from Lightning's CSV logs), optionally validation rFID / KID of saved weights vs step.

    python tools/training_curves.py --logs runs/photo64/logs --out reports/photo64/curves \
        [--rfid 0=DIR0,600=DIR1,2400=DIR2 --data '{"name": "photos", "zoom": [1, 32]}' \
         --split val --num-images 500 --ks 16,64]

A resumed run writes one `version_N/metrics.csv` per start; the files are read in version order
and a later file's row for a step replaces an earlier one (a resume re-logs the steps after its
checkpoint). A run warm-started from another run's weights (`--model.init_from`) counts its
steps from 0: `--step-offset N` puts them after that run's N steps, and `--earlier FILE` adds
that run's validation rows when its logs are gone (a JSON list of {"step", "val_psnr": {k: dB}}).
Train loss is averaged over the logged steps between two validations, since one
logged batch of multi-scale crops is noisy. Writes `curves.json`, `curves.md` and
`curves.png` into --out (atomically, each).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

VAL_PSNR = re.compile(r"^val/psnr@(\d+)$")


def read_logs(logs: Path) -> dict[int, dict[str, float]]:
    """step -> {metric: value} over every version_*/metrics.csv, later versions winning."""
    files = sorted(logs.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    if not files:
        raise SystemExit(f"{logs}: no version_*/metrics.csv")
    steps: dict[int, dict[str, float]] = {}
    for path in files:
        fresh: dict[int, dict[str, float]] = {}
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                values = {k: float(v) for k, v in row.items() if v not in ("", None) and k}
                if "step" in values:
                    fresh.setdefault(int(values.pop("step")), {}).update(values)
        for step, values in fresh.items():  # replaces, not merges: a resume re-logs the step
            steps[step] = values
    return steps


def curve_rows(steps: dict[int, dict[str, float]]) -> tuple[list[int], list[dict]]:
    """(the ks validated, one row per validation step: step, mean train loss since the last
    validation, val PSNR per k)."""
    ks = sorted({int(m[1]) for v in steps.values() for k in v if (m := VAL_PSNR.match(k))})
    rows, losses = [], []
    for step in sorted(steps):
        values = steps[step]
        if "train/loss" in values:
            losses.append(values["train/loss"])
        if any(f"val/psnr@{k}" in values for k in ks):
            loss = sum(losses) / len(losses) if losses else None
            psnr = {k: values.get(f"val/psnr@{k}") for k in ks}
            rows.append({"step": step, "train_loss": loss, "train_batches": len(losses),
                         "val_psnr": psnr})  # fmt: skip
            losses = []
    return ks, rows


def measure_rfid(points: dict[int, str], data: str, split: str, n: int, ks: list[int]) -> list:
    """Validation rFID / KID / PSNR of each step's weights (a pretrained directory)."""
    from tokenizers_vis.evaluation import evaluate_tokenizer

    out = []
    for step, model in sorted(points.items()):
        t0 = time.time()
        result = evaluate_tokenizer(model, data, split=split, num_images=n, ks=ks,
                                    codecs="none", perceptual="none")  # fmt: skip
        scored = result.meta["num_images"]  # the split may hold fewer than asked for
        for row in result.rows:
            out.append({"step": step, "model": model, "k": row["k"], "rfid": row["rfid"],
                        "kid": row["kid_mean"], "psnr": row["psnr"], "images": scored,
                        "seconds": round(time.time() - t0, 1)})  # fmt: skip
        print(f"step {step}: {[(r['k'], round(r['rfid'], 2)) for r in out[-len(ks) :]]}")
    return out


def render(ks: list[int], rows: list[dict], rfid: list[dict], meta: dict) -> str:
    show = [k for k in ks if k in (1, 4, 16, 64, 128) or k == ks[-1]]
    lines = ["| step | train loss (mean since last val) | " + " | ".join(
        f"val PSNR k={k}" for k in show) + " |", "|---:|---:|" + "---:|" * len(show)]  # fmt: skip
    for r in rows:
        loss = "-" if r["train_loss"] is None else f"{r['train_loss']:.4f}"
        cells = [f"{r['val_psnr'][k]:.2f}" if r["val_psnr"].get(k) else "-" for k in show]
        lines.append(f"| {r['step']} | {loss} | " + " | ".join(cells) + " |")
    if rfid:
        scored = sorted({r["images"] for r in rfid})
        lines += ["", f"Validation rFID / KID ({'/'.join(map(str, scored))} {meta.get('split')} "
                  f"crops of `{meta.get('data')}`, TF-Inception, fp32 scoring):", "",
                  "| step | k | rFID | KID | PSNR |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in rfid:
            lines.append(f"| {r['step']} | {r['k']} | {r['rfid']:.2f} | {r['kid']:.4f} | "
                         f"{r['psnr']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(ks: list[int], rows: list[dict], rfid: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if rfid else 2, figsize=(15 if rfid else 10, 4))
    steps = [r["step"] for r in rows]
    for k in ks:
        axes[0].plot(steps, [r["val_psnr"].get(k) for r in rows], marker="o", label=f"k={k}")
    axes[0].set(xlabel="step", ylabel="val PSNR (dB)", title="validation PSNR per k")
    axes[0].legend(fontsize=7)
    axes[1].plot(steps, [r["train_loss"] for r in rows], marker="o")
    axes[1].set(xlabel="step", ylabel="train loss", title="train loss (mean between validations)")
    if rfid:
        for k in sorted({r["k"] for r in rfid}):
            pts = [(r["step"], r["rfid"]) for r in rfid if r["k"] == k]
            axes[2].plot(*zip(*pts, strict=True), marker="o", label=f"k={k}")
        axes[2].set(xlabel="step", ylabel="val rFID", title="validation rFID")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    from tokenizers_vis.atomic import atomic_write_with

    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/training_curves.py")
    parser.add_argument("--logs", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rfid", default="", help="STEP=MODEL_DIR,... weights to score")
    parser.add_argument("--data", default='{"name": "photos", "zoom": [1, 32]}')
    parser.add_argument("--split", default="val")
    parser.add_argument("--num-images", type=int, default=500)
    parser.add_argument("--ks", default="16,64")
    parser.add_argument("--step-offset", type=int, default=0, help="added to the logs' steps")
    parser.add_argument("--earlier", type=Path, help="JSON rows of an earlier run, shown first")
    args = parser.parse_args(argv)
    from tokenizers_vis.atomic import atomic_write

    logged = read_logs(args.logs)
    ks, rows = curve_rows({step + args.step_offset: v for step, v in logged.items()})
    if args.earlier:
        earlier = json.loads(args.earlier.read_text())
        for r in earlier:
            r["val_psnr"] = {int(k): v for k, v in r["val_psnr"].items()}
            r.setdefault("train_loss", None)
        rows = sorted(earlier, key=lambda r: r["step"]) + rows
    points = {int(s): d for s, d in (p.split("=", 1) for p in args.rfid.split(",") if p)}
    ks_rfid = [int(k) for k in args.ks.split(",")]
    rfid = measure_rfid(points, args.data, args.split, args.num_images, ks_rfid) if points else []
    meta = {"logs": str(args.logs), "step_offset": args.step_offset,
            "earlier": str(args.earlier) if args.earlier else None,
            "data": args.data, "split": args.split,
            "rfid_images": args.num_images, "command": " ".join(sys.argv)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"meta": meta, "ks": ks, "rows": rows, "rfid": rfid}
    atomic_write(args.out / "curves.json", json.dumps(record, indent=1).encode())
    atomic_write(args.out / "curves.md", render(ks, rows, rfid, meta).encode())
    plot(ks, rows, rfid, args.out / "curves.png")
    print(render(ks, rows, rfid, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
