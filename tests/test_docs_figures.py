"""Every figure the README and docs/results quote is re-derived here from the committed results file
that the text names, so a figure that drifts from its file fails the suite."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
README, RESULTS_README = ROOT / "README.md", RESULTS / "README.md"
ARCHIVE_README = RESULTS / "archive" / "README.md"


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def quoted(doc: Path, phrase: str) -> None:
    text = " ".join(doc.read_text().split())  # line breaks in the page do not matter
    assert phrase in text, f"{doc.relative_to(ROOT)} does not say {phrase!r} (what its results file gives)"


def race_row(summary: dict[str, Any], label: str, key: str, fmt: str, best: str, methods: tuple[str, ...]) -> str:
    values = [summary["methods"][m][key] for m in methods]
    cells = [format(v, fmt) for v in values]
    cells = [f"**{c}**" if v == (min(values) if best == "min" else max(values)) else c for c, v in zip(cells, values)]
    return f"| {label} | " + " | ".join(cells) + " |"


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


def test_the_quick_bench_time_split() -> None:
    quick = load("quick/results.json")
    share = quick["setup_s"]["evolve_computing_s"] / quick["bench_s_runs"][0]
    quoted(RESULTS_README, f"evolution {quick['setup_s']['evolve_computing_s']:.0f} s, the old adapter "
                           f"{quick['setup_s']['old_adapter_wn-topic_seed0_s']:.0f} s")
    quoted(RESULTS_README, f"Evolution is {share:.0%} of it")


def test_gemma_back_to_the_old_quality() -> None:
    cells = {c["method"]: c for c in load("quick-gemma3/results.json")["cells"]}
    ft, relora = cells["portllm-ft"], cells["relora"]
    quoted(RESULTS_README, f"ReLoRA takes {relora['restore_step']} steps ({relora['restore_s']:.0f} s) and "
                           f"PortLLM+FT {ft['restore_step']} ({ft['restore_s']:.0f} s)")


def test_the_rank_benches_cross_the_old_quality_at_the_quoted_steps() -> None:
    steps = [c["restore_step"] for name in ("rank-strong", "rank-gentle") for c in load(f"archive/{name}/results.json")["cells"]
             if c.get("restore_step") is not None and c["method"] != "zero-shot"]
    quoted(ARCHIVE_README, f"(steps {min(steps)}–{max(steps)} of 60")


def test_the_anchor_sweep_default_against_no_anchor() -> None:
    cells = {c["cell"]: c for c in load("archive/anchor-sweep/results.json")["cells"]}
    default, free = cells["relora"]["events"], cells["relora λ1=0 λ2=0 coupled"]["events"]
    assert [e["val_accuracy"] for e in default] == [e["val_accuracy"] for e in free]
    gap = max(abs(a["val_loss"] - b["val_loss"]) for a, b in zip(default, free, strict=True))
    quoted(ARCHIVE_README, "The default's accuracy curve equals λ = 0's at every check; its validation loss "
                           f"differs by at most {gap:.1e}")


def test_the_rank_table_ratios_are_medians_of_the_per_seed_ratios() -> None:
    cells = load("archive/rank-strong/results.json")["cells"]
    by = {(c["method"], c["seed"]): c for c in cells}
    ratios = [by[("portllm-ft", s)]["restore_s"] / by[("relora", s)]["restore_s"] for s in (0, 1, 2)]
    quoted(ARCHIVE_README, f"{statistics.median(ratios):.2f}× ({', '.join(f'{r:.2f}' for r in ratios)})")


def mean_std(values: list[float], fmt: str) -> str:
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


@pytest.mark.parametrize("name, update", [("archive/rank-strong", "strong"), ("archive/rank-gentle", "gentler")])
def test_the_rank_table_rows_are_their_results(name: str, update: str) -> None:
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    for c in load(f"{name}/results.json")["cells"]:
        cells.setdefault(c["method"], {})[c["seed"]] = c  # seeds paired by key, not by order
    ft = cells["portllm-ft"]
    for method in ("portllm-ft", "relora-paper", "relora-bo", "relora"):
        by_seed = cells[method]
        seeds = sorted(by_seed)
        assert seeds == sorted(ft) and len(seeds) == 3
        ratios = [ft[s]["restore_s"] / by_seed[s]["restore_s"] for s in seeds]
        vs = "1.00×" if method == "portllm-ft" else \
            f"{statistics.median(ratios):.2f}× ({', '.join(f'{r:.2f}' for r in ratios)})"
        search = "-" if method == "portllm-ft" else mean_std([by_seed[s]["search_s"] for s in seeds], ".1f")
        shown = "**relora**" if method == "relora" else method
        quoted(ARCHIVE_README, " | ".join([
            f"| {update}", shown, mean_std([by_seed[s]["restore_s"] for s in seeds], ".1f"),
            mean_std([by_seed[s]["restore_step"] for s in seeds], ".0f"), vs,
            mean_std([by_seed[s]["events"][0]["val_accuracy"] for s in seeds], ".3f"), search,
            mean_std([by_seed[s]["metrics"]["val_accuracy"] for s in seeds], ".3f")]) + " |")


def test_the_anchor_table_rows_are_their_results() -> None:
    for c in load("archive/anchor-sweep/results.json")["cells"]:
        if c["method"] != "relora":
            continue
        lam, kind = c["config"]["training"]["lambda1"], c["config"]["training"]["anchor"]
        final = c["metrics"]["val_accuracy"]
        steps = str(c["restore_step"]) if c["restore_step"] is not None else f"never ({final:.3f})"
        flips = c.get("negative_flip_rate")
        default = c["cell"] == "relora"
        label = "1e-3 (default)" if default else f"{lam:g}"
        quoted(ARCHIVE_README, f"| {label} | {'-' if lam == 0 else kind} | {steps} | {final:.3f} | "
                               f"{'-' if flips is None else format(flips, '.3f')} |")


def test_the_demo_table_rows_are_its_results() -> None:
    cells = {c["cell"]: c for c in load("demo/results.json")["cells"]}

    def when(seconds: float | None) -> str:
        return "never" if seconds is None else f"{seconds:.0f} s"

    old, new = cells["zero-shot (old base)"], cells["zero-shot"]
    quoted(RESULTS_README, f"| zero-shot Θ / Θ′ | {old['metrics']['test_accuracy']:.3f} / "
                           f"{new['metrics']['test_accuracy']:.3f} | never | never | {new['total_s']:.0f} s |")
    threshold, restore = old["threshold"], old["old_adapter_old_base_val_accuracy"]
    quoted(RESULTS_README, f"| method | test acc | ready at {threshold:.3f} | back to old quality {restore:.3f} | rollout |")
    for cell, label in (("portllm", "portllm"), ("scratch", "scratch"), ("portllm-ft", "portllm-ft"),
                        ("relora", "relora (the paper's algorithm, today's `relora-paper`)")):
        c = cells[cell]
        quoted(RESULTS_README, f"| {label} | {c['metrics']['test_accuracy']:.3f} | {when(c['ready_s'])} | "
                               f"{when(c['restore_s'])} | {c['total_s']:.0f} s |")


@pytest.mark.parametrize("name, backbone", [("quick", "SmolLM2-135M"), ("quick-gemma3", "Gemma-3-270M")])
def test_the_backbone_rows_are_their_results(name: str, backbone: str) -> None:
    cells = {c["cell"]: c for c in load(f"{name}/results.json")["cells"]}
    portllm = cells["portllm"]
    drop = 100 * (portllm["old_adapter_old_base_val_accuracy"] - portllm["events"][0]["val_accuracy"])
    test = [100 * cells[m]["metrics"]["test_accuracy"] for m in ("zero-shot", "scratch", "portllm-ft", "relora")]
    ready = " / ".join(f"{cells[m]['ready_s']:.0f} s" for m in ("scratch", "portllm-ft", "relora"))
    quoted(RESULTS_README, f"| {backbone} | {drop:.1f} | " + " | ".join(f"{t:.1f}" for t in test)
                           + f" | {ready} (threshold {portllm['threshold']:.3f}) |")


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


def minus(x: float, fmt: str) -> str:
    """A number as the prose prints it, with a typographic minus."""
    return format(x, fmt).replace("-", "−")


def test_the_quick_bench_prose_is_its_results() -> None:
    quick = load("quick/results.json")
    c = {x["cell"]: x for x in quick["cells"]}
    port, ft, rel, grid, scratch = c["portllm"], c["portllm-ft"], c["relora"], c["relora-grid"], c["scratch"]
    old = port["old_adapter_old_base_val_accuracy"]
    port0 = port["events"][0]["val_accuracy"]

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    quoted(RESULTS_README, f"The update costs PortLLM {100 * (old - port0):.1f} points.** The old adapter scores "
                           f"{pct(old)} on the old base and {pct(port0)} on the new one (validation). The new base alone "
                           f"falls from {pct(c['zero-shot (old base)']['metrics']['test_accuracy'])} to "
                           f"{pct(c['zero-shot']['metrics']['test_accuracy'])} (test)")
    test = {k: pct(v["metrics"]["test_accuracy"]) for k, v in c.items()}
    assert test["relora"] == test["relora-no-sreg"]
    quoted(RESULTS_README, f"Test accuracy is {test['relora']} for relora and relora-no-sreg, {test['relora-grid']} for "
                           f"relora-grid, {test['portllm-ft']} for portllm-ft, {test['portllm']} for PortLLM and "
                           f"{test['scratch']} for scratch. BO picked (α, β) = ({minus(rel['alpha'], '.2f')}, "
                           f"{rel['beta']:.2f})")
    quoted(RESULTS_README, f"gives {port['threshold']:.3f}, scratch's best in 60 steps. That is below what the "
                           f"transferred adapter already scores ({port0:.3f}), so portllm-ft is ready at once "
                           f"({ft['ready_s']:.0f} s). relora is ready after {rel['ready_step']} training steps, once its "
                           f"{rel['search_s']:.0f} s search is done: {rel['ready_s']:.0f} s, "
                           f"{scratch['ready_s'] / rel['ready_s']:.2f}× faster than scratch ({scratch['ready_s']:.0f} s, "
                           f"{scratch['ready_step']} steps)")
    quoted(RESULTS_README, f"quality ({old:.3f}): PortLLM+FT is fastest.** The report adds this threshold because it is "
                           f"what a service provider promises. portllm-ft reaches it at step {ft['restore_step']} "
                           f"({ft['restore_s']:.0f} s), relora at step {rel['restore_step']} ({rel['restore_s']:.0f} s), "
                           f"relora-grid at step {grid['restore_step']} ({grid['restore_s']:.0f} s); scratch does not "
                           f"reach it. ReLoRA's init starts {100 * (rel['events'][0]['val_accuracy'] - port0):.1f} points "
                           f"above PortLLM's ({rel['events'][0]['val_accuracy']:.3f} against {port0:.3f})")
    assert scratch["restore_step"] is None
    quoted(RESULTS_README, f"relora's {rel['total_s']:.0f} s against scratch's {scratch['total_s']:.0f} s "
                           f"({scratch['total_s'] / rel['total_s']:.2f}×) is the {rel['search_s']:.0f} s search plus "
                           f"{rel['train_s']:.0f} s of training. The search is {rel['search_s'] / rel['total_s']:.0%} of "
                           "relora's total")
    quoted(RESULTS_README, f"BO took {rel['search_s']:.0f} s and {rel['search_examples_scored']} probe examples "
                           f"({len(rel['probes'])} probes); the 5×5 grid took {grid['search_s']:.0f} s and "
                           f"{grid['search_examples_scored']} examples and chose ({minus(grid['alpha'], '.0f')}, "
                           f"{grid['beta']:.0f}), {test['relora-grid']} test")
    first = quick["bench_s_runs"][0]
    quoted(RESULTS_README, f"The first run took {first:.0f} s, {first / 60:.0f} minutes, from an empty cache "
                           f"(`bench_s_runs[0]`; `bench_s`, {quick['bench_s']:.0f} s, adds the two re-runs)")


def test_the_gemma_prose_is_its_results() -> None:
    gemma = load("quick-gemma3/results.json")
    c = {x["cell"]: x for x in gemma["cells"]}
    port, ft, rel = c["portllm"], c["portllm-ft"], c["relora"]
    assert ft["ready_step"] == rel["ready_step"]
    quoted(RESULTS_README, f"On Gemma, the threshold (scratch's best, {port['threshold']:.3f}) is above what PortLLM "
                           f"scores ({port['events'][0]['val_accuracy']:.3f}), so every method must train. PortLLM+FT and "
                           f"ReLoRA both need {rel['ready_step']} steps, and ReLoRA's {rel['search_s']:.0f} s search makes "
                           f"it {rel['ready_s'] - ft['ready_s']:.0f} s later. To the old service's quality "
                           f"({port['old_adapter_old_base_val_accuracy']:.3f})")
    quoted(RESULTS_README, f"The Gemma bench took {gemma['bench_s_runs'][0] / 60:.0f} minutes: evolution "
                           f"{gemma['setup_s']['evolve_computing_s']:.0f} s")


def test_the_rank_prose_is_its_results() -> None:
    per = {name: load(f"archive/{name}/results.json")["cells"] for name in ("rank-strong", "rank-gentle")}

    def of(name: str, method: str) -> list[dict[str, Any]]:
        return sorted((c for c in per[name] if c["method"] == method), key=lambda c: c["seed"])

    drops = {n: [100 * (c["old_adapter_old_base_val_accuracy"] - c["events"][0]["val_accuracy"])
                 for c in of(n, "portllm-ft")] for n in per}
    olds = [c["old_adapter_old_base_val_accuracy"] for c in of("rank-strong", "portllm-ft")]
    quoted(ARCHIVE_README, f"60 steps on the old base, {mean_std(olds, '.3f')} validation accuracy)")
    quoted(ARCHIVE_README, f"PortLLM loses {mean_std(drops['rank-strong'], '.1f')} points")
    quoted(ARCHIVE_README, f"PortLLM loses {mean_std(drops['rank-gentle'], '.1f')} points against these 60-step")
    init = {(n, m): statistics.mean(c["events"][0]["val_accuracy"] for c in of(n, m))
            for n in per for m in ("relora", "portllm-ft")}
    quoted(ARCHIVE_README, f"({init[('rank-strong', 'relora')]:.3f} and {init[('rank-gentle', 'relora')]:.3f} against "
                           f"{init[('rank-strong', 'portllm-ft')]:.3f} and {init[('rank-gentle', 'portllm-ft')]:.3f})")
    searches = [statistics.mean(c["search_s"] for c in of(n, "relora")) for n in per]
    shares = [c["search_s"] / c["total_s"] for n in per for c in of(n, "relora")]
    quoted(ARCHIVE_README, f"The search costs {min(searches):.0f}–{max(searches):.0f} s")
    quoted(ARCHIVE_README, f"{100 * min(shares):.0f}–{100 * max(shares):.0f}% of relora's whole 60-step run")


def test_the_performance_prose_is_perf_json() -> None:
    rows = {r["stage"]: r for r in json.loads((ROOT / "docs" / "results" / "perf" / "perf.json").read_text())["rows"]}
    probe, delta, step = rows["probe evaluation"], rows["delta projection"], rows["training step"]
    quoted(RESULTS_README, f"probe evaluation was {probe['speedup']:.1f}× faster, with identical numbers. The physical "
                           f"limit on this machine (every prompt token through every decoder matrix at the measured "
                           f"GEMM rate) allows at most {probe['limit_speedup']:.2f}×")
    quoted(RESULTS_README, f"the streamed delta projection was {delta['speedup']:.1f}× faster, with the same error and "
                           f"{delta['ours_peak_rss_mb']:.0f} MB against {delta['plain_peak_rss_mb']:.0f} MB peak memory")
    quoted(RESULTS_README, f"training steps were {step['speedup']:.2f}× faster than `Trainer` with PEFT")
    over, cheap, rss = rows["search overhead"], rows["cheaper search"], rows["readapt peak RSS"]
    quoted(RESULTS_README, f"a BO iteration (GP fit and EI) costs {over['gp_and_acq_s']:.2f} s, "
                           f"{over['share_of_probe']:.1%} of a 512-example probe")
    quoted(RESULTS_README, f"the cheaper search scored {cheap['examples_ratio']:.2f}× fewer examples and took "
                           f"{cheap['seconds_ratio']:.2f}× less time than the full search")
    quoted(RESULTS_README, f"`relora readapt` peaked at {rss['peak_rss_mb']:.0f} MB: {rss['ratio_to_one_base_process']:.2f}× "
                           f"a process that only loads one base and runs a forward, {rss['ratio']:.1f}× the bare fp32 weights")
    quoted(RESULTS_README, f"the search is {rows['end to end']['search_share_of_total']:.1%} of relora's end-to-end time")
    rel = {c["cell"]: c for c in load("quick/results.json")["cells"]}["relora"]
    quoted(RESULTS_README, f"with today's 60 steps it is {rel['search_s'] / rel['total_s']:.0%} ({rel['search_s']:.0f} s "
                           f"of {rel['total_s']:.0f} s in `docs/results/quick/results.json`)")


def test_the_demo_prose_is_its_results() -> None:
    c = {x["cell"]: x for x in load("demo/results.json")["cells"]}
    port = c["portllm"]
    old = port["old_adapter_old_base_val_accuracy"]
    quoted(RESULTS_README, f"The update costs PortLLM {100 * (old - port['events'][0]['val_accuracy']):.1f} points on D_val")
    quoted(RESULTS_README, f"the paper's threshold ({port['threshold']:.3f}, scratch's best) and the old service's own "
                           f"quality ({old:.3f})")


PERFORMANCE = ROOT / "docs" / "performance.md"


def test_the_performance_table_is_perf_json() -> None:
    rows = {r["stage"]: r for r in json.loads((ROOT / "docs" / "results" / "perf" / "perf.json").read_text())["rows"]}
    probe, delta, step = rows["probe evaluation"], rows["delta projection"], rows["training step"]
    quoted(PERFORMANCE, f"| probe evaluation ({probe['n_examples']} val examples) | {probe['ours_s']:.2f} s | "
                        f"{probe['plain_s']:.2f} s | {probe['speedup']:.2f}× |")
    quoted(PERFORMANCE, f"loss diff {probe['abs_loss_diff']:.1e}, same accuracy")
    quoted(PERFORMANCE, f"the physical limit is {probe['limit_s']:.1f} s, at most {probe['limit_speedup']:.2f}×")
    quoted(PERFORMANCE, f"| delta projection ({delta['n_modules']} q/v modules, r=16) | {delta['ours_s']:.2f} s | "
                        f"{delta['plain_s']:.2f} s | {delta['speedup']:.2f}× |")
    quoted(PERFORMANCE, f"error {delta['mean_rel_frobenius_error_ours']:.4f} against the exact "
                        f"{delta['mean_rel_frobenius_error_exact']:.4f}; peak RSS {delta['ours_peak_rss_mb']:.0f} MB "
                        f"(baseline {delta['ours_baseline_rss_mb']:.0f} MB) against {delta['plain_peak_rss_mb']:.0f} MB")
    quoted(PERFORMANCE, f"| training step (batch {step['batch_size']}) | {step['ours_steps_per_s']:.3f} steps/s | "
                        f"{step['plain_steps_per_s']:.3f} steps/s | {step['speedup']:.2f}× |")
    over, cheap, rss = rows["search overhead"], rows["cheaper search"], rows["readapt peak RSS"]
    quoted(PERFORMANCE, f"| search overhead per BO iteration | {over['gp_and_acq_s']:.3f} s | {over['probe_s']:.2f} s "
                        f"(one 512-example probe) | {over['share_of_probe']:.1%} |")
    quoted(PERFORMANCE, f"screened probe the search now uses ({over['screened_probe_s']:.2f} s), "
                        f"{over['share_of_screened_probe']:.1%}")
    quoted(PERFORMANCE, f"| cheaper search ({len(cheap['seeds'])} seeds) | {cheap['default']['examples_scored'][0]:.0f} "
                        f"examples, {cheap['default']['search_s'][0]:.1f} s | {cheap['full']['examples_scored'][0]:.0f} "
                        f"examples, {cheap['full']['search_s'][0]:.0f} s | {cheap['examples_ratio']:.2f}× fewer examples, "
                        f"{cheap['seconds_ratio']:.2f}× less time |")
    quoted(PERFORMANCE, f"| {rss['peak_rss_mb']:.0f} MB | {rss['one_base_process_mb']:.0f} MB (a process holding one "
                        f"base) / {rss['fp32_weights_mb']:.0f} MB (its fp32 weights) | "
                        f"{rss['ratio_to_one_base_process']:.2f}× / {rss['ratio']:.1f}× |")
    quoted(PERFORMANCE, f"already needs {rss['one_base_process_mb'] / rss['fp32_weights_mb']:.1f}× the weights")
    quoted(PERFORMANCE, f"| {rows['end to end']['search_share_of_total']:.1%} | < 10% | no |")


def test_the_search_check_rows_are_perf_json() -> None:
    cheap = next(r for r in json.loads((ROOT / "docs" / "results" / "perf" / "perf.json").read_text())["rows"]
                 if r["stage"] == "cheaper search")
    runs = {(r["variant"], r["seed"]): r for r in cheap["runs"]}
    for seed in cheap["seeds"]:
        full, default = runs[("full", seed)], runs[("default", seed)]
        quoted(PERFORMANCE, " | ".join([
            f"| {seed}", f"({minus(full['alpha'], '.3f')}, {full['beta']:.3f})",
            f"({minus(default['alpha'], '.3f')}, {default['beta']:.3f})",
            f"{full['init_val_loss']:.4f} / {full['init_val_accuracy']:.3f}",
            f"{default['init_val_loss']:.4f} / {default['init_val_accuracy']:.3f}",
            f"{full['steps_to_ready']} / {default['steps_to_ready']}",
            f"{full['examples_scored']} / {default['examples_scored']}",
            f"{full['search_s']:.1f} / {default['search_s']:.1f} |"]))
    defaults = [runs[("default", s)] for s in cheap["seeds"]]
    assert all(r["stopped_early"] for r in defaults)
    screened = [r["probes"] - 3 for r in defaults]  # the best 3 re-scored on all of D_val (rescore_top) are not
    quoted(PERFORMANCE, f"after {min(screened)} to {max(screened)} screened probes")
    gap = max(abs(runs[("full", s)]["init_val_loss"] - runs[("default", s)]["init_val_loss"]) for s in cheap["seeds"])
    quoted(PERFORMANCE, f"differs by at most {gap:.4f}")
    quoted(PERFORMANCE, f"at the bench's threshold ({defaults[0]['threshold']:.3f})")


def test_the_roofline_prose_is_perf_json_and_the_benches() -> None:
    rows = {r["stage"]: r for r in json.loads((ROOT / "docs" / "results" / "perf" / "perf.json").read_text())["rows"]}
    probe, step = rows["probe evaluation"], rows["training step"]
    quoted(PERFORMANCE, f"T = {probe['tokens']:,} tokens in {probe['ours_s']:.1f} s")
    quoted(PERFORMANCE, f"at the measured {probe['gemm_gflops']:.0f} GFLOP/s GEMM rate is {probe['limit_s']:.1f} s, so "
                        f"the evaluator runs at {probe['limit_s'] / probe['ours_s']:.0%} of the machine's matrix rate")
    quoted(PERFORMANCE, f"examples (about 295 tokens) took {1 / step['ours_steps_per_s']:.2f} s")
    per_step = {name: {c["cell"]: c for c in load(f"{name}/results.json")["cells"]}["scratch"]
                for name in ("quick", "quick-gemma3")}
    gemma, smol = (per_step[n]["train_s"] / per_step[n]["steps"] for n in ("quick-gemma3", "quick"))
    quoted(PERFORMANCE, f"training took {gemma:.1f} s a step against SmolLM2's {smol:.1f} s")


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


STRENGTH_METHODS = ("portllm-ft", "relora-reuse")


def strength_row(method: str, info: dict[str, Any]) -> str:
    """One row of the results page's table for a strengths race, from its summary."""
    seeds = info["per_seed"]

    def spread(key: str) -> str:
        values = [s[key] for s in seeds]
        return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"

    return (f"| {method} | {info['compute_s_mean']:.0f} ± {info['compute_s_std']:.0f} | {info['zero_step_share']:.2f} | "
            f"{spread('ready')} | {spread('never_ready')} | {info['retention_mean']:.2f} | {info['retention_min']:.2f} | "
            f"{info['false_publishes_test']} of {info['services_tested']} | {info['examples_per_decision']:.0f} |")


def ledger_rows(path: Path) -> dict[tuple[int, str], list[list[str]]]:
    """ledgers.md's service rows per (seed, method), each row's cells."""
    rows: dict[tuple[int, str], list[list[str]]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("## seed "):
            seed, method = line.removeprefix("## seed ").split(", ")
            key = (int(seed), method)
        elif line.startswith("| is-") or line.startswith("| wn-"):
            rows.setdefault(key, []).append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


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
    ledgers = ledger_rows(RESULTS / "fleet-strengths-mild" / "ledgers.md")
    assert sorted(ledgers) == [(s, k) for s in (0, 1, 2) for k in STRENGTH_METHODS]
    alpha, beta = 20, 21  # the ledger's alpha and beta columns
    reverts = sum(r[alpha] == "-1.000" and r[beta] == "1.000" for s in (0, 1, 2) for r in ledgers[(s, "relora-reuse")])
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


@pytest.mark.parametrize("band", ["mild", "moderate"])
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
    ledgers = ledger_rows(RESULTS / "fleet-strengths-moderate" / "ledgers.md")
    alpha, beta = 20, 21
    reverts = sum(r[alpha] == "-1.000" and r[beta] == "1.000" for s in (0, 1, 2) for r in ledgers[(s, "relora-reuse")])
    assert not any(r[alpha] != "0.000" for s in (0, 1, 2) for r in ledgers[(s, "portllm-ft")])
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


def glance_table() -> str:
    """The README's results table: both strengths races, from their summaries."""
    runs = [(band, k, load(f"fleet-strengths-{band}/summary.json")["methods"][k])
            for band in ("mild", "moderate") for k in STRENGTH_METHODS]
    names = {"portllm-ft": "PortLLM+FT", "relora-reuse": "relora-reuse"}

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(i) for _, _, i in runs) + " |"

    def ready(i: dict[str, Any]) -> str:
        return f"{statistics.fmean(s['ready'] for s in i['per_seed']):.1f} ({i['never_ready']})"

    return "\n".join([
        "| 12 services, 3 seeds | " + " | ".join(f"{band}: {names[k]}" for band, k, _ in runs) + " |",
        "|---|" + "---|" * len(runs),
        row("PortLLM's drop on the fleet (points)", lambda i: f"{i['portllm_drop_points']:.1f}"),
        row("CPU-s to all final (mean ± std)", lambda i: f"{i['compute_s_mean']:.0f} ± {i['compute_s_std']:.0f}"),
        row("ready of 12 (never ready, of 36 rollouts)", ready),
        row("ready at zero training steps", lambda i: f"{i['zero_step_share']:.0%}"),
        row("false publishes on test", lambda i: f"{i['false_publishes_test']} of {i['services_tested']}"),
        row("update retention, mean (worst service)", lambda i: f"{i['retention_mean']:.2f} ({i['retention_min']:.2f})"),
    ])


def test_the_readme_table_and_status_are_the_strengths_races() -> None:
    quoted(README, " ".join(glance_table().split()))
    mild, moderate = (load(f"fleet-strengths-{b}/summary.json")["methods"] for b in ("mild", "moderate"))
    ft, reuse = (mild["portllm-ft"], moderate["portllm-ft"]), (mild["relora-reuse"], moderate["relora-reuse"])
    quoted(README, f"after a mild base update (PortLLM loses {ft[0]['portllm_drop_points']:.1f} points) and a moderate "
                   f"one ({ft[1]['portllm_drop_points']:.1f} points)")
    quoted(README, f"kept the update (retention {ft[0]['retention_mean']:.2f} and {ft[1]['retention_mean']:.2f}). "
                   f"It published {ft[0]['zero_step_share']:.0%} and {ft[1]['zero_step_share']:.0%} of services with "
                   "zero training steps")
    quoted(README, f"took {reuse[0]['compute_vs_portllm_ft']:.2f}× and {reuse[1]['compute_vs_portllm_ft']:.2f}× of that "
                   f"compute, mostly by starting from the revert point: it kept {reuse[0]['retention_mean']:.2f} and "
                   f"{reuse[1]['retention_mean']:.2f} of the update")
    assert all(i["false_publishes_test"] == 0 and i["services_tested"] == 36 for i in (*ft, *reuse))
    quoted(README, f"(75% cleared their gate this way after the mild update, 17% after the moderate one)")
    assert (f"{ft[0]['zero_step_share']:.0%}", f"{ft[1]['zero_step_share']:.0%}") == ("75%", "17%")
    split = {b: load(f"fleet-strengths-{b}/compute-split.json") for b in ("mild", "moderate")}
    outside = statistics.fmean((c["cpu_s"] - c["train_s"]) / c["cpu_s"] for c in split["mild"]["portllm-ft"].values())
    quoted(README, f"what the script spends outside training is {outside:.0%} of its compute")
    m = split["moderate"]
    without = statistics.fmean((m["relora-reuse"][s]["cpu_s"] - m["relora-reuse"][s]["old_scoring_cpu_s"]) /
                               (m["portllm-ft"][s]["cpu_s"] - m["portllm-ft"][s]["old_scoring_cpu_s"]) for s in "012")
    quoted(README, f"relora-reuse's spending without that scoring is still {without:.2f}× the script's")
    retained = sorted(f"{i['retention_mean']:.2f}" for i in reuse)
    quoted(README, f"kept {retained[0]}–{retained[1]} of the update |")


def test_the_fleet_guide_quotes_the_old_service_scoring_of_both_races() -> None:
    mild, moderate = (statistics.fmean(c["old_scoring_cpu_s"] for c in load(f"fleet-strengths-{b}/compute-split.json")
                                       ["portllm-ft"].values()) for b in ("mild", "moderate"))
    quoted(ROOT / "docs" / "fleet.md", f"the same old-service scoring cost {mild:.0f} CPU-s in one race and "
                                       f"{moderate:.0f} in another")
