#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the quick bench end to end on the GPU, from an empty cache, timed.
# Results go to docs/results/quick-gpu/ (commit them with this command line). About 10 minutes on
# one H100/H200-class GPU is the target; nothing here has been run yet (no GPU was available).
# `relora lab perf` is not part of it: its plain-way baselines are written for the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-gpu
.venv-gpu/bin/python -m pip install -q --upgrade pip
.venv-gpu/bin/python -m pip install -q torch          # PyPI's default Linux wheel is the CUDA build
.venv-gpu/bin/python -m pip install -q -e ".[bench]"
.venv-gpu/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
out=docs/results/quick-gpu
mkdir -p "$out"
RELORA_CACHE="$(mktemp -d)" /usr/bin/time -v -o "$out/time.txt" \
  .venv-gpu/bin/relora lab bench --profile quick --device cuda --out runs/bench-quick-gpu
cp runs/bench-quick-gpu/{results.json,report.md,*.png} "$out/"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv"
echo "results in $out"
