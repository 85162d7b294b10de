#!/usr/bin/env bash
# The main job: sets up .venv when it is missing (scripts/setup.sh), then runs `relora demo` (SmolLM2 +
# WordNet, five methods, a summary and plots). Arguments pass through, e.g. scripts/demo.sh --out runs/demo2
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/relora demo "$@"
