#!/usr/bin/env bash
# A screenshot of a rollout's fleet page, as the README shows it:
#   scripts/page_screenshot.sh runs/fleet-race-strong/seed0/relora/rollout docs/fleet-page.png
set -euo pipefail
out=$1; png=$2
"$(dirname "$0")/../.venv/bin/relora" report "$out" >/dev/null
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1300,1000 \
  --screenshot="$png" "file://$(realpath "$out")/report/index.html" 2>/dev/null
echo "$png"
