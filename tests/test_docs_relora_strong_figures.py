"""relora's fused init against the script at the strong update (docs/results/fleet-strengths-strong-relora): relora and
relora-paper rolled out at the powered race's revision and seeds over two sessions, the script's and the powered
screen's seeds taken from that race's summary. The results page quotes the summary, the stand-in seeds are the powered
race's own, and the summary agrees with the ledgers of both races."""

from __future__ import annotations

from figures import (FUSED, METHOD_DOC, RESULTS, RESULTS_README, at_revert_point, check_candidate_prose,
                     check_summary_against_ledgers, ledger_services, load, mean_std, per_seed_ratio, quoted, strength_row)

RACE = "fleet-strengths-strong-relora"
POWERED = "fleet-strengths-strong-powered"
TAKEN = ("portllm-ft", "portllm-ft-powered")  # their seeds stand in from the powered race (--earlier-summary)
REVISION = "b12d3d97580567345155f6006c5464dc1c2dca84"


def _methods() -> dict:
    return load(f"{RACE}/summary.json")["methods"]


def _seed(method: str, seed: int) -> dict:
    return next(s for s in _methods()[method]["per_seed"] if s["seed"] == seed)


def test_the_table_and_the_commands_are_the_summary() -> None:
    summary = load(f"{RACE}/summary.json")
    assert summary["run_revisions"] == [REVISION]
    # session 2 took session 1's summary as --earlier-summary: the stand-ins, and the fused seeds finished then
    assert summary["seeds_from_earlier"] == {"file": f"docs/results/{RACE}/summary.json", "methods": {
        **{m: [3, 4, 5] for m in TAKEN}, "relora": [3, 4], "relora-paper": [3]}}
    for method in (*TAKEN, *FUSED):
        info = summary["methods"][method]
        assert info["unfinished_seeds"] == [] and [s["seed"] for s in info["per_seed"]] == [3, 4, 5]
        quoted(RESULTS_README, strength_row(method, info))
    quoted(RESULTS_README, f"relora lab race --profile fleet-strengths-strong --seeds 3,4,5 --methods "
                           f"{','.join(FUSED)} --out runs/{RACE}")
    quoted(RESULTS_README, f"relora lab race --profile fleet-strengths-strong --seeds 5 --methods relora --out runs/{RACE}")
    quoted(RESULTS_README, f"relora lab race --profile fleet-strengths-strong --seeds 4,5 --methods relora-paper "
                           f"--out runs/{RACE}")
    for earlier in (POWERED, RACE):  # session 1's summary, then session 2's
        quoted(RESULTS_README, f"--methods {','.join((*TAKEN, *FUSED))} --summary-only --earlier-summary "
                               f"docs/results/{earlier}/summary.json")


def test_the_stand_in_seeds_are_the_powered_races_own() -> None:
    powered = load(f"{POWERED}/summary.json")["methods"]
    for method in TAKEN:
        assert _methods()[method]["per_seed"] == powered[method]["per_seed"]


def test_the_summary_agrees_with_the_ledgers_of_both_races() -> None:
    check_summary_against_ledgers(RACE, ledgers_of={m: POWERED for m in TAKEN})
    # the same fleet: each service's old quality and PortLLM's step-0 quality are the powered race's, seed by seed
    scripts = ledger_services(RESULTS / POWERED / "ledgers.md")
    for (seed, method), rows in ledger_services(RESULTS / RACE / "ledgers.md").items():
        theirs = scripts[(seed, "portllm-ft")]
        for name, row in rows.items():
            assert (row["old_service_val_accuracy"], row["fallback_val_accuracy"]) == (
                theirs[name]["old_service_val_accuracy"], theirs[name]["fallback_val_accuracy"]), (seed, method, name)


def test_each_fused_method_against_the_script_is_the_summary() -> None:
    for method in FUSED:
        check_candidate_prose(RACE, method)


def _zero_step(method: str) -> list[dict[str, str]]:
    """The ledger rows of a method's services published at zero steps, over the three seeds."""
    return [r for (_, m), services in ledger_services(RESULTS / RACE / "ledgers.md").items() if m == method
            for r in services.values() if r["state"] == "ready" and r["steps"] == "0"]


def test_the_zero_step_publications_are_the_ledgers_coefficients() -> None:
    for method in FUSED:
        zero = _zero_step(method)
        assert len(zero) == round(_methods()[method]["zero_step_share"] * 36)
    relora, paper = _zero_step("relora"), _zero_step("relora-paper")
    reverted = [r for r in relora if at_revert_point(r)]
    quoted(RESULTS_README, f"`relora` published {len(relora)} of 36 at zero steps, {len(reverted)} of them at the "
                           "revert point (α = −1, β = 1,")
    alphas, betas = sorted(float(r["alpha"]) for r in paper), sorted(float(r["beta"]) for r in paper)
    assert not any(at_revert_point(r) for r in paper) and alphas[-1] < 0 < betas[0] - 1
    low, high = (f"{a:.2f}".replace("-", "−") for a in (alphas[0], alphas[-1]))  # the page's minus sign
    quoted(RESULTS_README, f"`relora-paper` published {len(paper)} of 36 at zero steps, 0 of them at the revert point, "
                           f"but all at α between {low} and {high} with β of {betas[0]:.2f} to {betas[-1]:.2f}")
    quoted(RESULTS_README, f"`relora-paper`'s worst service kept {_methods()['relora-paper']['retention_min']:.2f}")


def test_the_cpu_second_caveat_is_seed_4s_row() -> None:
    relora, script = _seed("relora", 4), _seed("portllm-ft", 4)
    quoted(RESULTS_README, f"Seed 4's `relora` CPU-s ({relora['compute_s'] / script['compute_s']:.2f}×) are inflated")
    clean = [r for s, r in zip((3, 4, 5), per_seed_ratio(_methods(), "compute_s", "relora")) if s != 4]
    quoted(RESULTS_README, f"without it, {clean[0]:.2f}× and {clean[1]:.2f}×")


def test_the_verdict_is_the_summary() -> None:
    m = _methods()
    ft = m["portllm-ft"]
    for method in FUSED:
        assert min(per_seed_ratio(m, "compute_s", method)) > 1  # dearer than the script in every seed
        assert min(per_seed_ratio(m, "examples_scored", method)) > 1  # "and scored more examples in every seed"
        assert m[method]["retention_mean"] < 0.9 <= ft["retention_mean"]  # below the 0.9
        assert m[method]["never_ready"] < ft["never_ready"]  # fewer left behind
    assert m["relora-paper"]["never_ready"] == min(i["never_ready"] for i in m.values())  # "the fewest of the four"
    quoted(RESULTS_README, "No fused init reached the script's compute, let alone half of it")
    quoted(RESULTS_README, f"`relora-paper` left {m['relora-paper']['never_ready']} of 36 against the script's "
                           f"{ft['never_ready']}, the fewest of the four")
    quoted(RESULTS_README, f"retention below the issue's 0.9 ({m['relora']['retention_mean']:.2f} and "
                           f"{m['relora-paper']['retention_mean']:.2f} against the script's {ft['retention_mean']:.2f})")


def test_the_method_page_quotes_the_race() -> None:
    m = _methods()
    ft = m["portllm-ft"]
    for method in FUSED:
        quoted(METHOD_DOC, f"at the strong update (3 seeds) it took {mean_std(per_seed_ratio(m, 'compute_s', method))} of "
                           f"the script's CPU-s, left {m[method]['never_ready']} of 36 services behind against "
                           f"{ft['never_ready']}, and kept {m[method]['retention_mean']:.2f} of the update against "
                           f"{ft['retention_mean']:.2f} |")
