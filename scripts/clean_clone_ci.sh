#!/usr/bin/env bash
# Runs .ci/run as CI does: on a fresh clone of HEAD (new venv, install included), with CI=true.
# Prints the test summary, every failing or erroring test by name (pytest's short summary lines), and the wall
# time; the README quotes docs/results/ci/clean-clone.txt, made by:
#   scripts/clean_clone_ci.sh > docs/results/ci/clean-clone.txt
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/relora"
cd "$work/relora"
echo "revision: $(git rev-parse --short HEAD); machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
start=$(date +%s)
CI=true bash .ci/run > "$work/ci.log" 2>&1 || true  # a red run still reports what failed, below
grep -E "^(FAILED|ERROR) " "$work/ci.log" || true
grep -E "^[0-9]+ (passed|failed)|[0-9]+ passed.* in |[0-9]+ failed.* in " "$work/ci.log" | tail -n 1
echo "wall: $(( $(date +%s) - start )) s for .ci/run on a clean clone, venv and install included"
