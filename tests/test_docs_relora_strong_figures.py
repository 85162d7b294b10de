"""relora's fused init against the script at the strong update (docs/results/fleet-strengths-strong-relora): relora and
relora-paper rolled out at the powered race's revision and seeds, the script's and the powered screen's seeds taken
from that race's summary. The results page quotes the summary, the stand-in seeds are the powered race's own, and the
summary agrees with the ledgers of both races."""

from __future__ import annotations

from figures import RESULTS, RESULTS_README, check_summary_against_ledgers, ledger_services, load, quoted

RACE = "fleet-strengths-strong-relora"
POWERED = "fleet-strengths-strong-powered"
FUSED = ("relora", "relora-paper")
TAKEN = ("portllm-ft", "portllm-ft-powered")  # their seeds stand in from the powered race (--earlier-summary)
REVISION = "b12d3d97580567345155f6006c5464dc1c2dca84"


def _summary() -> dict:
    return load(f"{RACE}/summary.json")


def _finished(method: str) -> list[dict]:
    return _summary()["methods"][method]["per_seed"]


def _seed(method: str, seed: int) -> dict:
    return next(s for s in _finished(method) if s["seed"] == seed)


def seed_row(method: str, seed: dict, script: dict) -> str:
    """One rollout's row of the results page's per-seed table, with its CPU-s and work units over the script's in
    the same seed (one seed is an anecdote: no means until three)."""
    return (f"| {seed['seed']} | {method} | {seed['compute_s']:.0f} | {seed['compute_s'] / script['compute_s']:.2f} | "
            f"{seed['examples_scored'] / script['examples_scored']:.2f} | {seed['train_tokens'] / script['train_tokens']:.2f} | "
            f"{seed['zero_step_share']:.0%} | {seed['ready']} | {seed['never_ready']} | {seed['retention_mean']:.2f} | "
            f"{seed['retention_min']:.2f} | {seed['false_publishes_test']} of {seed['services_tested']} |")


def test_the_per_seed_table_and_the_command_are_the_summary() -> None:
    summary = _summary()
    assert summary["run_revisions"] == [REVISION]
    # session 2 took session 1's summary as --earlier-summary: the stand-ins, and the fused seeds finished then
    assert summary["seeds_from_earlier"] == {"file": f"docs/results/{RACE}/summary.json", "methods": {
        **{m: [3, 4, 5] for m in TAKEN}, "relora": [3, 4], "relora-paper": [3]}}
    scripts = {s["seed"]: s for s in _finished("portllm-ft")}
    shown = {s["seed"] for s in _finished("relora")}  # the table's seeds: those a fused method finished
    for method in (*TAKEN, *FUSED):
        for seed in _finished(method):
            if seed["seed"] in shown:
                quoted(RESULTS_README, seed_row(method, seed, scripts[seed["seed"]]))
    finished = {m: [s["seed"] for s in _finished(m)] for m in FUSED}
    unfinished = {m: summary["methods"][m]["unfinished_seeds"] for m in FUSED}
    assert all(sorted(finished[m] + unfinished[m]) == [3, 4, 5] for m in FUSED)
    quoted(RESULTS_README, f"relora lab race --profile fleet-strengths-strong --seeds 3,4,5 --methods "
                           f"{','.join(FUSED)} --out runs/{RACE}")
    for earlier in (POWERED, RACE):  # session 1's summary, then session 2's
        quoted(RESULTS_README, f"--methods {','.join((*TAKEN, *FUSED))} --summary-only --earlier-summary "
                               f"docs/results/{earlier}/summary.json")
    state = "; ".join(f"`{m}` seed{'s' if len(finished[m]) > 1 else ''} "
                      f"{', '.join(map(str, finished[m]))}" for m in FUSED)
    quoted(RESULTS_README, f"State: partial ({state} of 3, 4 and 5)")


def test_the_stand_in_seeds_are_the_powered_races_own() -> None:
    powered = load(f"{POWERED}/summary.json")["methods"]
    for method in TAKEN:
        assert _finished(method) == powered[method]["per_seed"]
        assert _summary()["methods"][method]["unfinished_seeds"] == []


def test_the_summary_agrees_with_the_ledgers_of_both_races() -> None:
    check_summary_against_ledgers(RACE, ledgers_of={m: POWERED for m in TAKEN})
    # the same fleet: each service's old quality and PortLLM's step-0 quality are the powered race's, seed by seed
    scripts = ledger_services(RESULTS / POWERED / "ledgers.md")
    for (seed, method), rows in ledger_services(RESULTS / RACE / "ledgers.md").items():
        theirs = scripts[(seed, "portllm-ft")]
        for name, row in rows.items():
            assert (row["old_service_val_accuracy"], row["fallback_val_accuracy"]) == (
                theirs[name]["old_service_val_accuracy"], theirs[name]["fallback_val_accuracy"]), (seed, method, name)


def test_the_bullets_are_the_ledgers_and_the_summary() -> None:
    rows = ledger_services(RESULTS / RACE / "ledgers.md")[(3, "relora")]
    zero = [r for r in rows.values() if r["state"] == "ready" and r["steps"] == "0"]
    reverted = [r for r in zero if (r["alpha"], r["beta"]) == ("-1.000", "1.000")]
    others = sorted(r["alpha"] for r in zero if r not in reverted)
    assert len(zero) == 6 and len(reverted) == 5 and others == ["-0.902"]
    quoted(RESULTS_README, "Five of `relora`'s six zero-step services started at α = −1, β = 1")
    quoted(RESULTS_README, "and the sixth at α = −0.90 (`ledgers.md`)")
    seed = {m: _seed(m, 3) for m in (*TAKEN, *FUSED)}
    assert seed["relora"]["zero_step_share"] == 0.5 and seed["portllm-ft"]["zero_step_share"] == 0
    assert (seed["relora"]["never_ready"], seed["portllm-ft"]["never_ready"], seed["relora-paper"]["never_ready"]) == (2, 4, 1)
    quoted(RESULTS_README, "left 2 services behind against the script's 4, and trained on "
                           f"{seed['relora']['train_tokens'] / seed['portllm-ft']['train_tokens']:.2f} of its tokens")
    assert seed["relora"]["compute_s"] > seed["portllm-ft"]["compute_s"]  # "it still took more CPU-s"
    assert all(seed[m]["retention_mean"] < seed["portllm-ft"]["retention_mean"] for m in FUSED)


def test_seed_4s_relora_bullet_is_its_row() -> None:
    relora, script = _seed("relora", 4), _seed("portllm-ft", 4)
    assert relora["zero_step_share"] == 0.5
    quoted(RESULTS_README, f"Seed 4's `relora` did the same: half at zero steps, {relora['never_ready']} left behind "
                           f"against the script's {script['never_ready']}, "
                           f"{relora['train_tokens'] / script['train_tokens']:.2f} of its tokens, "
                           f"{relora['examples_scored'] / script['examples_scored']:.2f} of its examples scored")
    quoted(RESULTS_README, f"Seed 4's `relora` CPU-s ({relora['compute_s'] / script['compute_s']:.2f}×) are inflated")


def test_seed_5s_relora_bullet_is_its_row_and_its_ledger() -> None:
    relora, script = _seed("relora", 5), _seed("portllm-ft", 5)
    rows = ledger_services(RESULTS / RACE / "ledgers.md")[(5, "relora")]
    zero = [r for r in rows.values() if r["state"] == "ready" and r["steps"] == "0"]
    assert len(zero) == relora["zero_step_share"] * 12 == 5
    assert all((r["alpha"], r["beta"]) == ("-1.000", "1.000") for r in zero)  # "all five at the revert point"
    quoted(RESULTS_README, f"Seed 5's `relora` published 5 of 12 at zero steps, all five at the revert point, but left "
                           f"{relora['never_ready']} behind against the script's {script['never_ready']}, with "
                           f"{relora['train_tokens'] / script['train_tokens']:.2f} of its tokens, "
                           f"{relora['examples_scored'] / script['examples_scored']:.2f} of its examples scored and "
                           f"{relora['compute_s'] / script['compute_s']:.2f}× its CPU-s")
