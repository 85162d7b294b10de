"""Every figure the README and docs/ quote about the fleet races, the update strengths and the gates is re-derived
here from the committed results file that the text names, so a figure that drifts from its file fails the suite
(the benches, the demo and performance: test_docs_bench_figures.py)."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from figures import (ARCHIVE_README, METHOD_DOC, README, RESULTS, RESULTS_README, ROOT, STRENGTH_METHODS, at_revert_point,
                     band_table, ledger_services, load, quoted, strength_row)


RACE_METHODS = ("portllm-ft", "relora", "relora-paper")




def test_the_results_page_gated_race_is_its_summary() -> None:
    m = load("fleet-race-strong-gated/summary.json")["methods"]
    ft, rel = m["portllm-ft"], m["relora"]
    (fs,), (rs,) = ft["per_seed"], rel["per_seed"]
    assert ft["false_publishes_test"] == rel["false_publishes_test"] == 0 and ft["services_tested"] == 12
    assert ft["published_below_margin_point_test"] == rel["published_below_margin_point_test"] == 0
    quoted(RESULTS_README, f"0 of 12 for each method**, 95% interval 0–{ft['false_publish_interval'][1]:.2f}")
    quoted(RESULTS_README, f"PortLLM+FT published {fs['ready']} of 12 (never ready {ft['never_ready']})")
    quoted(RESULTS_README, f"relora published {rs['ready']} (never ready {rel['never_ready']}), "
                           f"{rel['zero_step_share']:.0%} of them at zero steps")
    quoted(RESULTS_README, f"({fs['discordance_measured']:.2f} for PortLLM+FT, {rs['discordance_measured']:.2f} for relora)")
    quoted(RESULTS_README, f"a rejected look costs {fs['rejected_look_share']:.0%} (PortLLM+FT) and "
                           f"{rs['rejected_look_share']:.0%} (relora) of its gate set")
    quoted(RESULTS_README, f"{ft['compute_s_median']:.0f}\n  for PortLLM+FT and {rel['compute_s_median']:.0f} for relora"
           .replace("\n  ", " "))
    quoted(RESULTS_README, f"Gate examples per service: {ft['examples_per_decision']:.0f} and {rel['examples_per_decision']:.0f}")
    quoted(RESULTS_README, f"**Retention:** {ft['retention_mean']:.2f} (worst {ft['retention_min']:.2f}) for PortLLM+FT, "
                           f"{rel['retention_mean']:.2f} (worst {rel['retention_min']:.2f}) for relora")
    earlier = [s["ready"] for s in load("archive/fleet-race-strong/summary.json")["methods"]["portllm-ft"]["per_seed"]]
    quoted(RESULTS_README, f"against {statistics.fmean(earlier):.1f} of 12 under the\n  earlier point gate"
           .replace("\n  ", " "))
    ledgers = (RESULTS / "fleet-race-strong-gated" / "ledgers.md").read_text()
    assert "| is-animal | below-threshold | portllm-ft | 1 | 0.891 | 0.547 | 0.953 | not certified | 0.050 | 0.050 | 3 |" \
        in ledgers and "| 0.000 |" in ledgers.split("| is-animal | below-threshold")[1].splitlines()[0]


def race_compute(m: dict[str, Any]) -> str:
    """The results page's compute sentence for one race."""
    ft, relora, paper = m["portllm-ft"], m["relora"], m["relora-paper"]
    return (f"{ft['compute_s_median']:.0f} CPU-s (median over seeds) against {relora['compute_s_median']:.0f} for "
            f"relora ({relora['compute_s_median'] / ft['compute_s_median']:.2f}×) and {paper['compute_s_median']:.0f} "
            "for relora-paper")


def test_the_results_page_quotes_the_second_race() -> None:
    m = load("archive/fleet-race-strong-2/summary.json")["methods"]
    ft, relora, paper = m["portllm-ft"], m["relora"], m["relora-paper"]
    quoted(ARCHIVE_README, race_compute(m))
    quoted(ARCHIVE_README, f"({paper['never_ready']} of 36 rollouts, against {ft['never_ready']} for PortLLM+FT and "
                           f"{relora['never_ready']} for relora)")
    quoted(ARCHIVE_README, f"Retention** is {ft['retention_mean']:.2f} for PortLLM+FT (worst service "
                           f"{ft['retention_min']:.2f}), {relora['retention_mean']:.2f} for relora "
                           f"({relora['retention_min']:.2f}) and {paper['retention_mean']:.2f} for relora-paper "
                           f"({paper['retention_min']:.2f})")


def test_the_strong_race_prose_is_its_summary() -> None:
    m = load("archive/fleet-race-strong/summary.json")["methods"]
    ft, relora, paper = m["portllm-ft"], m["relora"], m["relora-paper"]
    quoted(ARCHIVE_README, race_compute(m))
    quoted(ARCHIVE_README, f"({relora['zero_step_share']:.0%} against {ft['zero_step_share']:.0%})")
    quoted(ARCHIVE_README, f"Mean retention {relora['retention_mean']:.2f} for relora, "
                           f"{paper['retention_mean']:.2f} for relora-paper, {ft['retention_mean']:.2f} for PortLLM+FT; "
                           f"the worst single service kept {relora['retention_min']:.2f} (relora) against "
                           f"{ft['retention_min']:.2f} (PortLLM+FT)")
    trained = [m[k]["never_ready"] for k in RACE_METHODS]
    quoted(ARCHIVE_README, f"the same {min(trained)}–{max(trained)} of 36 service rollouts stayed below it")
    quoted(ARCHIVE_README, f"({relora['time_to_ready_median_s']:.0f} s and {paper['time_to_ready_median_s']:.0f} s "
                           f"against {ft['time_to_ready_median_s']:.0f} s)")


def test_the_fleet_demo_prose_is_its_report() -> None:
    report = (ROOT / "docs" / "results" / "fleet" / "fleet_report.md").read_text()
    head, *lines = [ln for ln in report.splitlines() if ln.startswith("| ") and not ln.startswith("|---")]
    keys = [k.strip() for k in head.strip("|").split("|")]
    rows = [dict(zip(keys, (v.strip() for v in ln.strip("|").split("|")))) for ln in lines]
    ready = [r for r in rows if r["state"] == "ready"]
    below = [r for r in rows if r["state"] == "below-threshold"]
    fleet_doc = ROOT / "docs" / "fleet.md"

    def span(key: str, of: list[dict[str, str]]) -> str:
        values = [float(r[key]) for r in of]
        return f"{min(values):.2f}–{max(values):.2f}"

    quoted(fleet_doc, f"{len(ready)} of {len(rows)} services ready, each exactly once")
    assert len(below) == 1 and [r["name"] for r in rows if r["attempts"] == "2"] == ["is-location"]
    quoted(fleet_doc, f"`{below[0]['name']}` ended below its {below[0]['threshold'][:4]} threshold ({below[0]['val_accuracy']})")
    quoted(fleet_doc, f"which scores {below[0]['fallback_val_accuracy']} on the new base")
    quoted(fleet_doc, f"(PortLLM) score {span('fallback_val_accuracy', rows)}, about chance, against "
                      f"{span('old_service_val_accuracy', rows)} on the old base. After re-adaptation they score "
                      f"{span('val_accuracy', ready)}")
    flips = float(report.split("on D_val): ")[1].split()[0])
    quoted(fleet_doc, f"The mean negative-flip rate is {flips:.1%}")
    hours = report.split("Compute: ")[1].split()[0]
    scratch = report.split("Scratch estimate ")[1].split()[0]
    quoted(fleet_doc, f"The rollout used {float(hours):.2f} CPU-hours (search and training) against a Scratch estimate of "
                      f"{float(scratch):.2f} h")
    median = float(report.split("Time to ready: median ")[1].split()[0])
    quoted(fleet_doc, f"The median time to ready was {median:.0f} s")


def test_the_gate_page_sizes_are_the_power_checks() -> None:
    """docs/gates.md's gate sizes at margin 0.05 and 3 looks are what the power check computes."""
    from relora.core.math import gate

    sizes = [gate.examples_needed(margin=0.05, alpha_look=0.05 / 3, discordance=pd, most=4096) for pd in (0.1, 0.15, 0.2)]
    quoted(ROOT / "docs" / "gates.md", f"{sizes[0]:,} gate examples at discordance 0.1, {sizes[1]:,} at 0.15, "
                                       f"{sizes[2]:,} at 0.2")
    assert gate.certifiable_margin(n=24, alpha_look=0.05 / 3, discordance=0.2) == 0.43
    quoted(ROOT / "docs" / "gates.md", "can certify margins of 0.43 or more")


def test_the_readme_gate_sizes_are_the_defaults() -> None:
    from relora.core.math import gate
    from relora.core.model.config import GateConfig
    from relora.core.run.inputs import GATE_MAX

    g = GateConfig()
    need = gate.examples_needed(margin=0.05, alpha_look=g.alpha / g.looks, discordance=g.discordance, most=4096)
    quoted(README, f"half of `val.jsonl` (at most {GATE_MAX:,} examples, a fixed draw)")
    quoted(README, f"margin 0.05 over {g.looks} looks needs {need:,} of them at the assumed discordance of {g.discordance}")
    quoted(README, f"at α = {g.alpha} per service")


def test_the_race_strengths_are_the_pilots_choice_re_derived_from_its_rows() -> None:
    """docs/results/update-strengths/pilot.json (relora lab bench --profile update-pilot): each update's drop and
    probe move from its per-service rows, the band each names, and the race profiles' updates."""
    import statistics

    from relora.lab.race import RACE_PROFILES

    STRENGTH_LRS = {band: RACE_PROFILES[f"fleet-strengths-{band}"].evolve_lr for band in ("mild", "moderate", "strong")}
    from relora.lab.strengths import Measured, choose

    pilot = load("update-strengths/pilot.json")
    measured = []
    for update in pilot["updates"]:
        rows = [r for r in pilot["rows"] if r["lr"] == update["lr"]]
        drops = [100 * (r["old_test"] - r["portllm_test"]) for r in rows]
        m = Measured(update["lr"], statistics.fmean(drops), statistics.stdev(drops),
                     statistics.fmean(r["probe_move"] for r in rows))
        assert m.drop_points == pytest.approx(update["drop_points"]) and m.band() == update["band"]
        measured.append(m)
    assert choose(measured) == pilot["chosen"] == STRENGTH_LRS
    for band, lr in STRENGTH_LRS.items():
        assert RACE_PROFILES[f"fleet-strengths-{band}"].evolve_lr == lr
    mild = next(m for m in measured if m.lr == STRENGTH_LRS["mild"])
    assert mild.drop_points <= 3 and mild.probe_move >= 0.02  # mild, and retention still defined


def test_the_mild_race_is_its_summary_its_ledgers_and_its_compute_split() -> None:
    summary = load("fleet-strengths-mild/summary.json")
    m = summary["methods"]
    assert summary["seeds"] == [0, 1, 2] and all(not m[k]["unfinished_seeds"] for k in STRENGTH_METHODS)
    for method in STRENGTH_METHODS:
        quoted(RESULTS_README, strength_row(method, m[method]))
    ft, reuse = m["portllm-ft"], m["relora-reuse"]
    quoted(RESULTS_README, f"On this fleet it cost PortLLM {ft['portllm_drop_points']:.1f} points")
    assert ft["portllm_drop_points"] == reuse["portllm_drop_points"] <= 3  # mild on the race's fleet too
    ready = statistics.fmean(s["ready"] for s in ft["per_seed"])
    quoted(RESULTS_README, f"PortLLM+FT published {ft['zero_step_share']:.0%} of its services at zero training steps "
                           f"and {ready:.1f} of 12 in all (never ready in {ft['never_ready']} of 36 rollouts). "
                           f"It kept the whole update (retention {ft['retention_mean']:.2f})")
    quoted(RESULTS_README, f"It took {reuse['compute_vs_portllm_ft']:.2f}× PortLLM+FT's compute and readied every "
                           f"service, {reuse['zero_step_share']:.0%} at zero steps")
    assert reuse["never_ready"] == 0
    ledgers = ledger_services(RESULTS / "fleet-strengths-mild" / "ledgers.md")
    assert sorted(ledgers) == [(s, k) for s in (0, 1, 2) for k in STRENGTH_METHODS]
    reverts = sum(at_revert_point(r) for s in (0, 1, 2)
                  for r in ledgers[(s, "relora-reuse")].values())
    quoted(RESULTS_README, f"it published {reverts} of its 36 service rollouts at the revert point")
    quoted(RESULTS_README, f"Its mean retention is {reuse['retention_mean']:.2f} (worst {reuse['retention_min']:.2f})")
    split, moderate = (load(f"fleet-strengths-{band}/compute-split.json")["portllm-ft"] for band in ("mild", "moderate"))
    outside = statistics.fmean((c["cpu_s"] - c["train_s"]) / c["cpu_s"] for c in split.values())
    quoted(RESULTS_README, f"What PortLLM+FT spent outside training (that scoring and its gate looks) is {outside:.0%} "
                           "of its compute here")
    assert outside > 0.5  # so no method charged alike for it can reach half the script's compute
    old_here, old_there = (statistics.fmean(c["old_scoring_cpu_s"] for c in d.values()) for d in (split, moderate))
    quoted(RESULTS_README, f"The scoring cost {old_here:.0f} CPU-s in this race, but {old_there:.0f} in the moderate "
                           "race below, for the same old services on gate sets of the same size")
    at_lower = statistics.fmean((c["cpu_s"] - c["old_scoring_cpu_s"] + old_there - c["train_s"]) /
                                (c["cpu_s"] - c["old_scoring_cpu_s"] + old_there) for c in split.values())
    quoted(RESULTS_README, f"Even at the lower figure, the share outside training is {at_lower:.0%}")
    assert at_lower > 0.5
    quoted(RESULTS_README, f"0 of {ft['services_tested']} for each method")
    assert ft["false_publishes_test"] == reuse["false_publishes_test"] == 0


@pytest.mark.parametrize("band", ["mild", "moderate", "strong"])
def test_a_strengths_race_compute_split_adds_up_to_its_summary(band: str) -> None:
    m = load(f"fleet-strengths-{band}/summary.json")["methods"]
    split = load(f"fleet-strengths-{band}/compute-split.json")
    for method in STRENGTH_METHODS:  # seed by seed, and one run per service
        assert [split[method][str(s["seed"])]["cpu_s"] for s in m[method]["per_seed"]] == \
            pytest.approx([s["compute_s"] for s in m[method]["per_seed"]])
        assert all(c["runs"] == 12 for c in split[method].values())


def test_the_moderate_race_is_its_summary_its_ledgers_and_its_compute_split() -> None:
    summary = load("fleet-strengths-moderate/summary.json")
    m = summary["methods"]
    assert summary["seeds"] == [0, 1, 2] and all(not m[k]["unfinished_seeds"] for k in STRENGTH_METHODS)
    assert summary["run_revisions"] == load("fleet-strengths-mild/summary.json")["run_revisions"]  # one revision
    for method in STRENGTH_METHODS:
        quoted(RESULTS_README, strength_row(method, m[method]))
    ft, reuse = m["portllm-ft"], m["relora-reuse"]
    assert 5 <= ft["portllm_drop_points"] <= 12  # the moderate band on the race's own fleet
    quoted(RESULTS_README, f"after the moderate update. On this fleet it cost PortLLM {ft['portllm_drop_points']:.1f} points")
    ready = [statistics.fmean(s["ready"] for s in i["per_seed"]) for i in (reuse, ft)]
    quoted(RESULTS_README, f"{reuse['compute_vs_portllm_ft']:.2f}× PortLLM+FT's, with {ready[0]:.1f} of 12 services "
                           f"ready against {ready[1]:.1f}, and {reuse['zero_step_share']:.0%} at zero steps against "
                           f"{ft['zero_step_share']:.0%}")
    ledgers = ledger_services(RESULTS / "fleet-strengths-moderate" / "ledgers.md")
    reverts = sum(at_revert_point(r) for s in (0, 1, 2)
                  for r in ledgers[(s, "relora-reuse")].values())
    assert not any(r["alpha"] != "0.000" for s in (0, 1, 2) for r in ledgers[(s, "portllm-ft")].values())
    quoted(RESULTS_README, f"It started {reverts} of its 36 service rollouts at α = −1, β = 1 and kept "
                           f"{reuse['retention_mean']:.2f} of the update (worst {reuse['retention_min']:.2f}), against "
                           f"{ft['retention_mean']:.2f} for PortLLM+FT")
    split = load("fleet-strengths-moderate/compute-split.json")
    without = statistics.fmean(
        (split["relora-reuse"][s]["cpu_s"] - split["relora-reuse"][s]["old_scoring_cpu_s"]) /
        (split["portllm-ft"][s]["cpu_s"] - split["portllm-ft"][s]["old_scoring_cpu_s"]) for s in ("0", "1", "2"))
    quoted(RESULTS_README, f"relora-reuse's compute is {without:.2f}× PortLLM+FT's")
    assert without > 0.5
    seeds = {s["seed"]: s["compute_s"] for s in ft["per_seed"]}
    quoted(RESULTS_README, f"PortLLM+FT's seed 2 took {seeds[2]:.0f} CPU-s against {min(seeds[0], seeds[1]):.0f}–"
                           f"{max(seeds[0], seeds[1]):.0f}")
    assert ft["false_publishes_test"] == reuse["false_publishes_test"] == 0 and ft["services_tested"] == 36


def test_the_readme_status_is_the_races_at_each_strength() -> None:
    """The README's first screen: the default, and per strength the script, the powered candidate and relora-reuse,
    each from its race's summary; the retention and zero-step figures of the strengths races that the method page
    quotes."""
    quoted(README, " ".join(band_table().split()))
    mild, moderate = (load(f"fleet-strengths-{b}/summary.json")["methods"] for b in ("mild", "moderate"))
    ft, reuse = (mild["portllm-ft"], moderate["portllm-ft"]), (mild["relora-reuse"], moderate["relora-reuse"])
    assert all(i["false_publishes_test"] == 0 and i["services_tested"] == 36 for i in (*ft, *reuse))
    quoted(METHOD_DOC, f"(75% cleared their gate this way after the mild update, 17% after the moderate one)")
    assert (f"{ft[0]['zero_step_share']:.0%}", f"{ft[1]['zero_step_share']:.0%}") == ("75%", "17%")
    retained = sorted(f"{i['retention_mean']:.2f}" for i in reuse)
    quoted(METHOD_DOC, f"kept {retained[0]}–{retained[1]} of the update |")
    quoted(README, "The default is `portllm-ft`**, the simple script")


def test_the_fleet_guide_quotes_the_old_service_scoring_of_both_races() -> None:
    mild, moderate = (statistics.fmean(c["old_scoring_cpu_s"] for c in load(f"fleet-strengths-{b}/compute-split.json")
                                       ["portllm-ft"].values()) for b in ("mild", "moderate"))
    quoted(ROOT / "docs" / "fleet.md", f"the same old-service scoring cost {mild:.0f} CPU-s in one race and "
                                       f"{moderate:.0f} in another")

