#!/usr/bin/env bash
# The test command: sets up .venv when it is missing (scripts/setup.sh), then runs pytest.
# Slow real-model checks are excluded here; run them with: scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
