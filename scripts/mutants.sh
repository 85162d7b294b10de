#!/usr/bin/env bash
# The mutation check: each mutation below goes into a fresh copy of the working tree, and the test suite
# runs on that copy until a test fails (the tests named for the mutation first, then the whole suite).
# A mutation that no test catches is a hole in the suite. Writes docs/results/mutants/mutants.md.
#   scripts/mutants.sh            (about 5 minutes on 2 cores when every mutation is caught early)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
OUT=docs/results/mutants/mutants.md
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# name | file | text to find (exactly once) | replacement | the tests named for it
MUTATIONS=$(cat <<'LIST'
the sign of the delta term|src/relora/core/method/search/gradient.py|extra = c[0] * ((x @ d.A.T) @ d.B.T)|extra = -c[0] * ((x @ d.A.T) @ d.B.T)|tests/core/test_pins.py
the old scaling dropped|src/relora/core/method/search/gradient.py|c[1] * terms.old_scaling * ((x @ o.A.T) @ o.B.T)|c[1] * ((x @ o.A.T) @ o.B.T)|tests/core/test_pins.py
the anchor lambda set to 0|src/relora/core/method/train.py|lam = scheduled_lambda(step, schedule.e1, schedule.lambda1, schedule.lambda2)|lam = 0.0 * scheduled_lambda(step, schedule.e1, schedule.lambda1, schedule.lambda2)|tests/core/test_pins.py
rsLoRA scaling as alpha/r|src/relora/core/math/ops.py|return lora_alpha / (math.sqrt(r) if use_rslora else r)|return lora_alpha / r|tests/core/test_pins.py
one worker|src/relora/fleet/executors/local.py|for _ in range(fleet.workers)]|for _ in range(1)]|tests/fleet/test_fleet.py::test_local_workers_are_pinned_one_gpu_each
readiness judged on D_val|src/relora/core/run/inputs.py|return [val_items[i] for i in (searched if gate is None else gate)]|return [val_items[i] for i in searched]|tests/fleet/test_race.py
the rsLoRA fold left out|src/relora/core/model/adapter.py|factor = math.sqrt(cfg["r"])|factor = 1.0|tests/cli/test_peft_options.py
the layer options dropped|src/relora/core/model/adapter.py|                      **spec.layer_options)|                      )|tests/cli/test_peft_options.py
LIST
)

{
  echo "# Mutation check"
  echo
  echo "Written by \`scripts/mutants.sh\` at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')."
  echo "Each mutation is applied to a copy of the code and the suite runs on it until a test fails."
  echo
  echo "| mutation | file | caught | first failing test | seconds |"
  echo "|---|---|---|---|---|"
} > "$OUT.tmp"

survivors=0
while IFS='|' read -r name file find replace named; do
  copy=$WORK/copy
  rm -rf "$copy" && mkdir -p "$copy"
  git ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -t "$copy")
  "$PY" - "$copy/$file" "$find" "$replace" <<'PY'
import sys
from pathlib import Path
path, find, replace = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
text = path.read_text()
if text.count(find) != 1:
    sys.exit(f"{path}: the mutation's text occurs {text.count(find)} times, not once; update scripts/mutants.sh")
path.write_text(text.replace(find, replace))
PY
  where=$(cd "$copy" && PYTHONPATH=$copy/src "$PY" -c "import relora; print(relora.__file__)")
  [[ $where == $copy/* ]] || { echo "the copy's relora is not the one imported ($where)" >&2; exit 1; }
  start=$SECONDS
  caught=no; failing="-"
  for tests in "$named" "tests"; do
    if ! (cd "$copy" && PYTHONPATH=$copy/src RELORA_CACHE=$WORK/cache timeout 1200 "$PY" -m pytest -x -q \
          -p no:cacheprovider -rf $tests > "$WORK/log" 2>&1); then
      caught=yes
      failing=$(grep -m1 '^FAILED ' "$WORK/log" | sed -E 's/^FAILED //; s/ - .*$//' || true)  # ids may hold spaces
      failing=${failing:-$(tail -1 "$WORK/log")}
      break
    fi
  done
  [[ $caught == yes ]] || survivors=$((survivors + 1))
  echo "| $name | \`$file\` | $caught | \`$failing\` | $((SECONDS - start)) |" >> "$OUT.tmp"
  echo "$name: caught=$caught ($failing)"
done <<< "$MUTATIONS"

echo >> "$OUT.tmp"
echo "Mutations no test caught: $survivors." >> "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
exit $((survivors > 0))
