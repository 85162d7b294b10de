"""Every figure the docs quote about the benches, the demo, the backbones and performance is re-derived here from
the committed results file that the text names (the races, strengths and gates: test_docs_figures.py)."""

from __future__ import annotations

import json
import statistics
from typing import Any

import pytest

from figures import ARCHIVE_README, PERFORMANCE, RESULTS_README, ROOT, load, quoted


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
