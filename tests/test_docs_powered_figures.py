"""The powered-screen races' figures (docs/results/fleet-strengths-*-powered): the results page and the method page
quote each summary (the README's table is band_table's, in test_docs_figures.py), and each summary agrees with its
ledgers."""

from __future__ import annotations

import statistics

import pytest

from figures import (METHOD_DOC, README, RESULTS, RESULTS_README, candidate_figures, check_candidate_prose,
                     check_race_table, check_summary_against_ledgers, ledger_services, load, per_seed_ratio, quoted)

RACE = "fleet-strengths-moderate-powered"
MILD = "fleet-strengths-mild-powered"
STRONG = "fleet-strengths-strong-powered"
RACES = {RACE: "fleet-strengths-moderate", MILD: "fleet-strengths-mild", STRONG: "fleet-strengths-strong"}  # folder: profile
METHODS = ("portllm-ft", "portllm-ft-powered")


def _methods(race: str = RACE) -> dict:
    return load(f"{race}/summary.json")["methods"]


def _per_seed_ratio(key: str, race: str = RACE) -> tuple[float, float]:
    """The powered method over the script, seed by seed: mean and std of the ratios."""
    ratios = per_seed_ratio(_methods(race), key, "portllm-ft-powered")
    return statistics.fmean(ratios), statistics.stdev(ratios)


@pytest.mark.parametrize("race", RACES)
def test_the_race_table_is_its_summary(race: str) -> None:
    check_race_table(race, profile=RACES[race], methods=METHODS)


@pytest.mark.parametrize("race", RACES)
def test_the_race_summary_agrees_with_its_ledgers(race: str) -> None:
    check_summary_against_ledgers(race)


def test_the_services_the_powered_screen_left_behind_are_their_ledger_rows() -> None:
    services = ledger_services(RESULTS / RACE / "ledgers.md")
    for seed, name, looks in ((3, "is-act", "1"), (5, "wn-relation", "0")):
        script, powered = (services[(seed, m)][name] for m in METHODS)
        assert script["state"] == "ready" and script["steps"] == "25"
        assert powered["state"] == "below-threshold" and powered["gate_looks"] == looks  # failed, or never looked
    quoted(RESULTS_README, "is-act in seed 3, the script published at 25 steps; the powered screen sent it to the "
                           "gate once, and that look failed")
    assert services[(5, "portllm-ft")]["wn-relation"]["gate_looks"] == "2"
    assert services[(5, "portllm-ft-powered")]["wn-relation"]["steps"] == "50"  # the whole budget
    quoted(RESULTS_README, "wn-relation in seed 5, the script published at 25 steps, at its second look; under the "
                           "powered screen its D_val never reached the bar (the old service's own D_val) in 50 steps")


def _figures(race: str = RACE) -> dict[str, str]:
    return candidate_figures(_methods(race), "portllm-ft-powered")


@pytest.mark.parametrize("race", RACES)
def test_the_results_page_prose_is_the_summary(race: str) -> None:
    check_candidate_prose(race, "portllm-ft-powered")


def test_the_method_page_quotes_the_races() -> None:
    """(The README's status table is test_docs_figures.py's band_table.)"""
    f = _figures()
    quoted(METHOD_DOC, f"{f['cpu']} of `portllm-ft`'s CPU-s at the moderate update")
    mild = _figures(MILD)
    quoted(METHOD_DOC, f"At the mild update it took {mild['cpu']} of the CPU-s with {mild['never'].replace(' against', ' never ready against')}")
    strong = _figures(STRONG)
    quoted(METHOD_DOC, f"At the strong update it took {strong['cpu']} of the CPU-s with "
                       f"{strong['never'].replace(' against', ' never ready against')}")


def test_the_services_the_script_left_behind_at_the_mild_update_are_their_ledger_rows() -> None:
    services = ledger_services(RESULTS / MILD / "ledgers.md")
    left = [(seed, name) for (seed, method), rows in services.items() if method == "portllm-ft"
            for name, row in rows.items() if row["state"] != "ready"]
    assert len(left) == 5 and {name for _, name in left} == {"is-act", "is-artifact"}
    script = [services[(seed, "portllm-ft")][name] for seed, name in left]
    assert all(r["gate_verdict"] == "not certified" and r["gate_looks"] == "3" for r in script)  # every look spent
    assert sum(int(r["steps"]) < 50 for r in script) == 4
    powered = [services[(seed, "portllm-ft-powered")][name] for seed, name in left]
    assert sum(r["state"] == "ready" for r in powered) == 4
    assert services[(3, "portllm-ft-powered")]["is-artifact"]["gate_looks"] == "2"
    quoted(RESULTS_README, "All 5 services the script left behind were is-act or is-artifact, and each spent all "
                           "three of its looks without being certified, four of them before step 50")
    quoted(RESULTS_README, "published 4 of those 5 (is-artifact in seed 3 stayed behind, after 2 looks)")


def test_the_mild_band_bullets_are_the_summary() -> None:
    ft, powered = (_methods(MILD)[m] for m in METHODS)
    quoted(RESULTS_README, f"{powered['zero_step_share']:.0%} at zero steps against {ft['zero_step_share']:.0%}")
    quoted(RESULTS_README, f"gate set ({powered['examples_per_decision']:.0f} examples a service against "
                           f"{ft['examples_per_decision']:.0f})")
    cpu, _ = _per_seed_ratio("compute_s", MILD)
    assert cpu <= 1.0 and powered["never_ready"] <= ft["never_ready"]  # the band's target, as the page says
    quoted(RESULTS_README, "The mild band's target is met")


def test_the_strong_band_bullets_are_the_ledgers_and_the_compute_split() -> None:
    services = ledger_services(RESULTS / STRONG / "ledgers.md")
    script_left = {(seed, name) for (seed, method), rows in services.items() if method == "portllm-ft"
                   for name, row in rows.items() if row["state"] != "ready"}
    cheap = [(3, "is-food", "20"), (4, "is-communication", "15")]
    for seed, name, steps in cheap:  # three looks spent early: training stopped there
        row = services[(seed, "portllm-ft")][name]
        assert (seed, name) in script_left and row["gate_looks"] == "3" and row["steps"] == steps
    assert services[(3, "portllm-ft-powered")]["is-food"]["state"] == "ready"
    communication = services[(4, "portllm-ft-powered")]["is-communication"]
    assert communication["state"] != "ready" and communication["steps"] == "35" and communication["gate_looks"] == "3"
    quoted(RESULTS_README, "is-food (seed 3) and is-communication (seed 4) stopped at steps 20 and 15")
    quoted(RESULTS_README, "trained is-communication to step 35 before its third look failed")
    assert all(rows["wn-relation"]["state"] != "ready" for rows in services.values())  # all six rollouts
    for (seed, _), rows in services.items():
        topic = rows["wn-topic"]
        assert (topic["state"] == "ready") == (seed == 5) and topic["gate_looks"] == "3"  # published at its third look
        if seed != 5:
            assert (topic["val_accuracy"], topic["old_service_val_accuracy"]) == ("0.750", "0.672")
            assert int(topic["steps"]) <= 15 and -0.014 <= float(topic["test_diff"]) <= -0.004
    quoted(RESULTS_README, "wn-relation in all six rollouts, and wn-topic in seeds 3 and 4")
    quoted(RESULTS_README, "(0.750 against 0.672 at its last screen in those four rollouts)")
    split = load(f"{STRONG}/compute-split.json")["portllm-ft"]
    share = statistics.fmean(c["old_scoring_cpu_s"] / c["cpu_s"] for c in split.values())
    assert sorted(split) == [str(s["seed"]) for s in _methods(STRONG)["portllm-ft"]["per_seed"]]
    quoted(RESULTS_README, f"was {share:.0%} of the script's CPU-s")
    quoted(RESULTS_README, f"would have to cut everything else the script spends by {1 - (0.5 - share) / (1 - share):.0%}")
    quoted(README, f"is {share:.0%} of the script's compute")
    cpu, _ = _per_seed_ratio("compute_s", STRONG)
    quoted(RESULTS_README, f"The strong band's target is 0.5×; this is {cpu:.2f}×")
    ft, powered = (_methods(STRONG)[m] for m in METHODS)
    assert cpu > 0.5 and powered["never_ready"] <= ft["never_ready"]  # compute missed, never ready met
    quoted(RESULTS_README, "The strong band's never-ready condition is met, its compute target is not")


def test_the_readme_says_where_the_powered_screen_is_the_pick() -> None:
    for race, no_more_left_behind in ((MILD, True), (STRONG, True), (RACE, False)):
        ft, powered = (_methods(race)[m] for m in METHODS)
        assert (powered["never_ready"] <= ft["never_ready"]) == no_more_left_behind
        assert _per_seed_ratio("compute_s", race)[0] < 1.0  # cheaper at every strength
    quoted(README, "after a mild or a strong update it was cheaper and left no more services behind, after a moderate "
                   "one it left more")
