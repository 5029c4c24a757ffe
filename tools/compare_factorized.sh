#!/usr/bin/env bash
# Issue 10's comparison on the emoji data: plain VQ vs factorized VQ, each with and without
# semantic alignment, trained for the same number of optimizer steps (the CPU budget), then
# evaluated on the held-out test split and probed for the 9 emoji groups per sub-codebook.
#
#   tools/compare_factorized.sh [stage ...]     stages: train export eval probe table (default:
#                                               all five, in order) and combine (the concat-vs-sum
#                                               measurement quoted in quantizers/factorized.py)
#   STEPS=3000 OUT=runs/compare_factorized RUNS="vq_k64 fvq2x64_k64_sem" tools/compare_factorized.sh
#   SMOKE=1 STEPS=3 RUNS="..." tools/compare_factorized.sh     # check the plumbing in a minute
#
# Measured (2026-12-02, 2-core Intel Xeon with AMX, bf16): STEPS=500 with the six runs split over
# two concurrent streams of three (OMP_NUM_THREADS=1 each) took 71 min for train + export + eval
# + probe; results in reports/factorized-emoji32/SUMMARY.md and the README's Results.
#
# Runs (all 96 bytes per image at k = K):
#   vq_k64              emoji32_vq               plain VQ 4096 x 12, K = 64 (12 bits a token)
#   fvq2x64_k64         emoji32_fvq_2x64         factorized 2 x VQ 64, K = 64 (12 bits a token)
#   fvq2x4096_k32       emoji32_fvq_2x4096_k32   factorized 2 x VQ 4096, K = 32 (24 bits a token)
#   ..._sem             the same + semantic alignment of sub-codebook 0 to TF-Inception features
# Training resumes from <run>/checkpoints/last.ckpt when it exists (the stage can be re-run after
# an interruption). SMOKE=1 swaps in a tiny random timm teacher, small batches, 16 eval images
# and no rFID, so the whole chain runs in about a minute a run; its numbers mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-3000}
OUT=${OUT:-runs/compare_factorized}
RUNS=${RUNS:-"vq_k64 vq_k64_sem fvq2x64_k64 fvq2x64_k64_sem fvq2x4096_k32 fvq2x4096_k32_sem"}
PY=${PY:-.venv/bin/python}
VISTOK=${VISTOK:-.venv/bin/vistok}
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(train export eval probe table)

preset_of() {
  case "${1%_sem}" in
    vq_k64) echo emoji32_vq ;;
    fvq2x64_k64) echo emoji32_fvq_2x64 ;;
    fvq2x4096_k32) echo emoji32_fvq_2x4096_k32 ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

smoke_train=() smoke_sem=() smoke_eval=()
if [ "${SMOKE:-0}" = 1 ]; then
  smoke_train=(--data.batch_size 8 --trainer.limit_val_batches 1 --trainer.val_check_interval 2
    --model.warmup_steps 1)
  smoke_sem=("--model.semantic={codebook: 0, teacher: {name: timm, model: test_efficientnet,
    image_size: 32}, width: 64}")
  smoke_eval=(--num-images 16 --no-fid --perceptual none)
fi

log() { echo "[compare $(date +%H:%M:%S)] $*"; }

train() {
  local run=$1 dir="$OUT/$1" args=()
  args=(--config configs/tokenizer/emoji32_fvq.yaml)
  [[ $run == *_sem ]] && args+=(--config configs/tokenizer/emoji32_fvq_semantic.yaml)
  args+=(--config configs/data/emoji32.yaml --config configs/trainer/cpu.yaml
    --model.tokenizer "$(preset_of "$run")" --trainer.max_steps "$STEPS"
    --trainer.default_root_dir "$dir" --trainer.logger.init_args.save_dir "$dir")
  args+=(${smoke_train[@]+"${smoke_train[@]}"})
  [[ $run == *_sem ]] && args+=(${smoke_sem[@]+"${smoke_sem[@]}"})
  [ -f "$dir/checkpoints/last.ckpt" ] && args+=(--ckpt_path last)
  local start=$SECONDS
  "$VISTOK" train fit "${args[@]}"
  echo "$((SECONDS - start))" >> "$dir/train_seconds"
}

export_run() {
  "$VISTOK" export "$OUT/$1/checkpoints/last.ckpt" "$OUT/$1/model"
}

eval_run() {
  local start=$SECONDS
  "$VISTOK" eval tokenizer --model "$OUT/$1/model" --data emoji --split test --codecs none \
    --out "$OUT/$1/eval" --quiet ${smoke_eval[@]+"${smoke_eval[@]}"}
  echo "$((SECONDS - start))" > "$OUT/$1/eval_seconds"
}

probe_run() {
  "$PY" - "$OUT/$1" <<'EOF'
"""Ridge probe of the 9 emoji groups on each sub-codebook's token embeddings (train -> val -> test)."""
import json, sys
from pathlib import Path
import torch
from tokenizers_vis import Tokenizer
from tokenizers_vis.data.emoji import EmojiDataset
from tokenizers_vis.metrics.probe import ridge_probe, token_features

run = Path(sys.argv[1])
tok = Tokenizer.from_pretrained(run / "model")
splits = {s: EmojiDataset(s, tok.image_size) for s in ("train", "val", "test")}
images = {s: torch.stack([d[i][0] for i in range(len(d))]) for s, d in splits.items()}
labels = {s: torch.as_tensor(d.labels) for s, d in splits.items()}
classes = len(splits["train"].class_names)
result = {"num_classes": classes, "sizes": {s: len(d) for s, d in splits.items()}, "probes": []}
for k in sorted({4, tok.max_tokens}):
    feats = {s: token_features(tok, x, num_tokens=k) for s, x in images.items()}  # G x (n, k d)
    for g in range(len(feats["train"])):
        data = [(feats[s][g], labels[s]) for s in ("train", "val", "test")]
        result["probes"].append({"k": k, "codebook": g, **ridge_probe(*data, num_classes=classes)})
(run / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
for p in result["probes"]:
    print(f"{run.name} k={p['k']} codebook {p['codebook']}: test acc {p['accuracy']:.3f} "
          f"(val {p['val_accuracy']:.3f}, chance {p['chance']:.3f}, l2 {p['l2']})")
EOF
}

table() {
  "$PY" - "$OUT" $RUNS <<'EOF'
"""SUMMARY.md: one row per run at k = K, then PSNR / SSIM / rFID / KID per k for every run."""
import json, math, sys
from pathlib import Path

out, runs = Path(sys.argv[1]), sys.argv[2:]
fmt = lambda v, d=2: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"
joined = lambda vs, d=3: " / ".join(fmt(v, d) for v in vs)
head = ["run", "vocab", "K", "bytes", "PSNR", "SSIM", "rFID", "KID", "usage per codebook",
        "perplexity per codebook", "probe acc @K per codebook", "probe acc @4", "train s"]
lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
per_k = []
for run in runs:
    d = out / run
    report = json.loads((d / "eval" / "report.json").read_text())
    probe = json.loads((d / "probe.json").read_text())
    tok, usage = report["tokenizer"], report["codebook_usage"]
    last = report["vistok"][-1]
    acc = {(p["k"], p["codebook"]): p["accuracy"] for p in probe["probes"]}
    at = lambda k: joined([acc[key] for key in sorted(acc) if key[0] == k])
    seconds = sum(int(s) for s in (d / "train_seconds").read_text().split())
    lines.append("| " + " | ".join([
        run, "x".join(map(str, tok["vocab_sizes"])), str(tok["max_tokens"]),
        fmt(last["bytes_per_image"], 1), fmt(last.get("psnr")), fmt(last.get("ssim"), 4),
        fmt(last.get("rfid")), fmt(last.get("kid_mean"), 4), joined(usage["usage"]),
        joined(usage["perplexity"], 1), at(tok["max_tokens"]), at(4), str(seconds),
    ]) + " |")
    per_k += [f"\n### {run}\n", "| k | bytes | PSNR | SSIM | rFID | KID |", "|---|---|---|---|---|---|"]
    per_k += [f"| {r['k']} | {fmt(r['bytes_per_image'], 1)} | {fmt(r.get('psnr'))} | "
              f"{fmt(r.get('ssim'), 4)} | {fmt(r.get('rfid'))} | {fmt(r.get('kid_mean'), 4)} |"
              for r in report["vistok"]]
chance = fmt(probe["probes"][0]["chance"], 3)
text = "\n".join([
    "# Factorized codebooks on emoji (issue 10)", "",
    f"Test split, k = K; probes: ridge on the sub-codebook's code vectors of the first k tokens, "
    f"fit on train, strength chosen on val, accuracy on test (majority class: {chance}).", "",
    *lines, "", "## Per k", *per_k,
]) + "\n"
(out / "SUMMARY.md").write_text(text)
print(text)
EOF
}

combine() {
  "$PY" - <<'EOF'
"""Concat vs sum, by measurement: a patch VQ-VAE on 16 px emoji (4x4 patches as tokens), MLP
encoder / decoder around the quantizer, 500 Adam steps, val PSNR and perplexity; 2 seeds."""
import torch
from einops import rearrange
from torch import nn
from tokenizers_vis.data.emoji import EmojiDataset
from tokenizers_vis.metrics.usage import codebook_usage
from tokenizers_vis.registry import QUANTIZERS
import tokenizers_vis.quantizers  # noqa: F401  (registration)

torch.set_num_threads(1)
def patches(split):
    ds = EmojiDataset(split, 16)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    return rearrange(x, "b c (h p) (w q) -> b (h w) (c p q)", p=4, q=4)  # (b 16 48)
xt, xv = patches("train"), patches("val")
vq = lambda n, d: {"name": "vq", "codebook_size": n, "dim": d, "ema_decay": 0.99,
                   "dead_code_threshold": 0.05}
configs = {
    "concat 2 x VQ 64 x 6": {"name": "factorized", "quantizers": [vq(64, 6)] * 2},
    "sum 2 x VQ 64 x 6": {"name": "factorized", "quantizers": [vq(64, 6)] * 2, "combine": "sum"},
    "sum 2 x VQ 64 x 12": {"name": "factorized", "quantizers": [vq(64, 12)] * 2, "combine": "sum"},
    "plain VQ 64 x 6": vq(64, 6),
}
for name, spec in configs.items():
    for seed in (0, 1):
        torch.manual_seed(seed)
        q = QUANTIZERS.build(spec)
        enc = nn.Sequential(nn.Linear(48, 128), nn.GELU(), nn.Linear(128, q.dim))
        dec = nn.Sequential(nn.Linear(q.dim, 128), nn.GELU(), nn.Linear(128, 48))
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *q.parameters()], lr=2e-3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(500):
            x = xt[torch.randint(0, len(xt), (128,), generator=g)]
            out = q.train()(enc(x))
            loss = (dec(out.codes) - x).square().mean() + 0.25 * out.losses["quantizer/commit"]
            loss = loss + 0.1 * out.losses.get("quantizer/disentangle", 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = q.eval()(enc(xv))
            mse = (dec(out.codes).clamp(-1, 1) - xv).square().mean((1, 2))
        psnr = (10 * torch.log10(4 / mse)).mean().item()
        ppl = codebook_usage(out.ids, q.vocab_sizes)["perplexity"].tolist()
        print(f"{name:22s} seed {seed}: val PSNR {psnr:.2f} dB, perplexity {[round(p, 1) for p in ppl]}")
EOF
}

mkdir -p "$OUT"
for stage in "${STAGES[@]}"; do
  case $stage in
    combine) log "combine"; combine ;;
    table) log "table"; table ;;
    train|export|eval|probe)
      for run in $RUNS; do
        mkdir -p "$OUT/$run"
        log "$stage $run"
        case $stage in
          train) train "$run" ;;
          export) export_run "$run" ;;
          eval) eval_run "$run" ;;
          probe) probe_run "$run" ;;
        esac
      done ;;
    *) echo "unknown stage $stage (train export eval probe table combine)" >&2; exit 2 ;;
  esac
done
