#!/usr/bin/env bash
# Train photo64 on a lent GPU machine (the `device` tool's H200), from the carried weights, for a
# wall-clock budget, and bring back its checkpoints, logs and throughput (issue 25, item 5).
#
# That machine has PyTorch, Lightning and timm but no registry, none of the photo packages and
# not all of our dependencies, so the data and the missing wheels travel with the working tree,
# and a call's tree must stay under 64 MiB. What was done (2026-12-04):
#   here:   python tools/device_photos.py pack .device/photos, its files split in two folders
#           .device/p1 (38 MB) and .device/p2 (34 MB), each with the whole manifest.json;
#           the wheels the device lacks in .device/whl (diffusers, jsonargparse, webdataset,
#           constriction, torch-fidelity and their needs, `pip download --python-version 3.12`);
#           the carried start weights in fp16 in .device/carry16 (9 MB instead of 18; max
#           relative error 4.8e-4 per tensor, as a starting point only) and the large model
#           files of the tree emptied for the two calls (restored with `git checkout` after).
#   there:  bash tools/device_train_photo64.sh prepare .device/p1       (carry .device/whl, p1)
#           bash tools/device_train_photo64.sh train .device/p2 SECONDS (carry p2, carry16; the
#           next call, while the machine is still warm, so the first folder is still in place)
# `prepare` installs wheels and a first part of the photos, measures the GPU's bf16 matrix rate
# and runs a 30-step smoke test; `train` installs the rest, checks the whole photo set against
# the manifest (sha256 of every photo) and trains with TimeBudget, so the cosine schedule ends
# inside SECONDS. Everything comes back under $OUT as result.tar split in 15 MB parts.
set -euo pipefail
cd "$(dirname "$0")/.."
action=$1 photos=$2 seconds=${3:-360}
out=${OUT:-/tmp/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ ! -d /tmp/site/diffusers ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .device/whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
python3 tools/device_photos.py install "$photos"

run=runs/photo64_gpu
train=(python3 -m tokenizers_vis.cli.main train fit
  --config configs/tokenizer/emoji32_fsq.yaml --config configs/trainer/cpu.yaml
  --config configs/tokenizer/photo64_fsq.yaml --config configs/data/photos64.yaml
  --trainer.accelerator gpu --data.num_workers 14 --data.pin_memory true
  --data.batch_size 256 --model.optimizer.init_args.lr 1.0e-3
  --data.train_data '{"name": "photos", "crops_per_epoch": 256000}'
  --trainer.val_check_interval 250)

if [ "$action" = prepare ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 - <<'EOF' | tee "$out/peak.json"
import json, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(10):
    a @ b
end.record()
torch.cuda.synchronize()
tflops = 10 * 2 * 8192**3 / (start.elapsed_time(end) / 1e3) / 1e12
print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                  "bf16_matmul_8192_tflops": round(tflops, 1)}))
EOF
  "${train[@]}" --trainer.max_steps 30 --trainer.val_check_interval 20 \
    --trainer.default_root_dir /tmp/smoke --trainer.logger.init_args.save_dir /tmp/smoke 2>&1 | tail -20
  echo "prepare done"
  exit 0
fi

python3 tools/device_photos.py check "$photos"
carry=reports/photo64/carry/model.safetensors
if [ -f .device/carry16/model.safetensors ] && [ ! -s $carry ]; then
  python3 - <<'EOF'
from safetensors.torch import load_file, save_file
half = load_file(".device/carry16/model.safetensors")
save_file({k: v.float() if v.is_floating_point() else v for k, v in half.items()},
          "reports/photo64/carry/model.safetensors")
print("start weights restored to fp32 from .device/carry16")
EOF
fi
# tee needs the folder before Lightning makes it: on 2026-12-04 its absence stopped the script
# after training, and the export and packing below were run by hand in the next call.
mkdir -p $run
start=$(date +%s)
"${train[@]}" --model.init_from reports/photo64/carry --trainer.max_steps 1000000 \
  '--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint' \
  '--trainer.callbacks.monitor=val/psnr@64' --trainer.callbacks.mode=max \
  --trainer.callbacks.filename=best --trainer.callbacks.save_top_k=1 \
  '--trainer.callbacks+=tokenizers_vis.training.throughput.TimeBudget' \
  --trainer.callbacks.seconds="$seconds" \
  '--trainer.callbacks+=lightning.pytorch.callbacks.ThroughputMonitor' \
  --trainer.callbacks.batch_size_fn=tokenizers_vis.training.throughput.batch_size \
  --trainer.default_root_dir $run --trainer.logger.init_args.save_dir $run 2>&1 | tee $run/train.log | grep -v "it/s]" | tail -40
echo "train wall $(( $(date +%s) - start )) s" | tee -a $run/train.log
python3 -m tokenizers_vis.cli.main export $run/checkpoints/best.ckpt $run/export_best
python3 -m tokenizers_vis.cli.main export $run/checkpoints/last.ckpt $run/export_last
tar cf - $run/export_best $run/export_last $run/logs $run/train.log 2>/dev/null \
  | split -b 15M - "$out/result.tar.part-"
ls -la "$out"
