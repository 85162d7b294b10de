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
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
