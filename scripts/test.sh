#!/usr/bin/env bash
# The test command: creates .venv if needed, installs relora with its test extra, runs pytest.
# Slow real-model checks are excluded here; run them with: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned to the CPU wheel this machine has on disk (a bare "torch" pulls a CUDA build).
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# The fleet page's browser test needs headless Chromium (Debian's chromium): install it when missing and possible.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } >/dev/null 2>&1 \
      || echo "chromium: apt-get could not install it; the browser tests will skip"
  else
    echo "chromium: not installed, and installing it needs root and apt-get; the browser tests will skip"
  fi
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
