#!/usr/bin/env bash
# The one setup both README commands share: .venv with relora and every extra (CPU torch 2.13), and Debian's
# chromium for the fleet page's browser test. Quick when all is there already, so either command can run first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import relora, torch, pytest" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.relora-installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned to the CPU wheel this machine has on disk (a bare "torch" pulls a CUDA build).
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test]"
  touch .venv/.relora-installed
fi
# The fleet page's browser test needs headless Chromium (Debian's chromium): install it when missing and possible.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } >/dev/null 2>&1 \
      || echo "chromium: apt-get could not install it; the browser tests will skip"
  else
    echo "chromium: not installed, and installing it needs root and apt-get; the browser tests will skip"
  fi
fi
