"""What the old service's scoring would have cost a committed race with `gate.old_scoring: as-needed`, replayed
from its runs' records. A race run with the whole gate set scored first (`upfront`, every race before f378ce5)
records each look's examples; scored as needed, the old service scores D_val and, on the gate set, only as far
as the furthest look read. The verdicts and looks are the same either way (tests/cli/test_gate_cli.py), so the
replayed example counts are exact; the replayed CPU seconds are the recorded old-scoring seconds pro rata to
the examples (an estimate: examples differ in length). Each service's looks (examples read, estimated
difference, verdict) are kept beside it, with its work units counted from its record and events (those
revisions did not write them): forward examples, with the old service scored upfront and as needed, and
training examples.

    .venv/bin/python scripts/old_scoring_replay.py runs/fleet-strengths-mild > docs/results/fleet-strengths-mild/old-scoring-replay.json
"""

from __future__ import annotations

from pathlib import Path

from compute_split import print_for_race_folder, race_runs  # the scripts folder is on the path when a script runs


def replay_run(run: dict, screens: int) -> dict[str, float]:
    """One run's replay. Work units, as later revisions count them (relora.json's `work`): forward examples (the
    search's probes, the training loop's screens of D_val, the gate's looks and the old service's scoring) and
    training examples (the training steps' and the search's gradient steps'); screens: its events, one per
    screen of D_val."""
    gate = run.get("gate") or {}
    batch = run["config"]["training"]["batch_size"]
    gradient = sum(p["stage"] == "gradient" for p in run.get("probes", []))
    search_train = gradient * run["config"]["search"].get("gradient_steps", 0) * batch
    search_forward = (run.get("search_examples_scored") or 0) - search_train
    forward = search_forward + screens * (run.get("n_examples") or {}).get("val_search", 0) + \
        sum(look["examples"] for look in gate.get("looks", []))
    dval = (run.get("n_examples") or {}).get("val_search", 0)
    upfront = gate.get("old_examples", 0)
    as_needed = dval + max((look["examples"] for look in gate.get("looks", [])), default=0)
    old_s = gate.get("old_scoring_cpu_s", 0.0)
    looks = [[look["examples"], look["estimate"], look["verdict"]] for look in gate.get("looks", [])]
    return {"looks": looks, "cpu_s": run["cpu_s"] or 0.0, "train_examples": run["steps"] * batch + search_train,
            "forward_examples_upfront": forward + upfront, "forward_examples_as_needed": forward + as_needed, "old_examples_upfront": upfront, "old_examples_as_needed": as_needed,
            "old_scoring_cpu_s": old_s, "old_scoring_cpu_s_as_needed": old_s * as_needed / upfront if upfront else 0.0}


def replay(race: Path) -> dict:
    """{method: {seed: {services: {name: replay_run}, totals}}} from every run of every rollout."""
    out: dict[str, dict[str, dict]] = {}
    for method, seed, record, run in race_runs(race):
        cell = out.setdefault(method, {}).setdefault(seed, {"services": {}})
        events = (record.parent / "events.jsonl").read_text().splitlines()
        cell["services"][record.parts[-2]] = replay_run(run, screens=len(events))
    for seeds in out.values():
        for cell in seeds.values():
            rows = cell["services"].values()
            cell["totals"] = {key: sum(r[key] for r in rows) for key in next(iter(rows)) if key != "looks"}
            t = cell["totals"]
            t["cpu_s_as_needed"] = t["cpu_s"] - t["old_scoring_cpu_s"] + t["old_scoring_cpu_s_as_needed"]
    return out


if __name__ == "__main__":
    print_for_race_folder("old_scoring_replay.py", replay)
