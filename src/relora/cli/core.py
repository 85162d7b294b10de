"""Core commands: readapt, train-adapter, inspect, methods."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from relora.cli.app import field_help, main, one_line_errors
from relora.core.model.config import ReadaptConfig, build_config
from relora.core.method.methods import METHODS, method_for
from relora.core.method.record import RunRecord
from relora.errors import InputError


def _summary(record: RunRecord) -> str:
    keys = {"method", "alpha", "beta", "metrics", "time_to_ready_s", "steps_to_ready", "search_s", "train_s", "total_s",
            "judged_on", "retention"}
    return json.dumps(record.model_dump(include=keys), indent=2)


@main.command()
@click.option("--old-base", help=field_help(ReadaptConfig, "old_base"))
@click.option("--new-base", help=field_help(ReadaptConfig, "new_base"))
@click.option("--adapter", help=field_help(ReadaptConfig, "adapter"))
@click.option("--train", "train_file", help=field_help(ReadaptConfig, "train"))
@click.option("--val", "val_file", help=field_help(ReadaptConfig, "val"))
@click.option("--test", "test_file", help=field_help(ReadaptConfig, "test"))
@click.option("--update-probe", help=field_help(ReadaptConfig, "update_probe"))
@click.option("--out", help=field_help(ReadaptConfig, "out"))
@click.option("--method", type=click.Choice(sorted(METHODS)), help=field_help(ReadaptConfig, "method"))
@click.option("--threshold", help=field_help(ReadaptConfig, "threshold"))
@click.option("--stop-when-ready", is_flag=True, default=None, help=field_help(ReadaptConfig, "stop_when_ready"))
@click.option("--steps", type=int, help=field_help(ReadaptConfig, "training.steps"))
@click.option("--seed", type=int, help=field_help(ReadaptConfig, "seed"))
@click.option("--force", is_flag=True, default=None, help=field_help(ReadaptConfig, "force"))
@click.option("--portable", is_flag=True, default=None, help=field_help(ReadaptConfig, "portable"))
@click.option("--device", help=field_help(ReadaptConfig, "device"))
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), help=field_help(ReadaptConfig, "dtype"))
@click.option("--track", help=field_help(ReadaptConfig, "tracking", ", comma-separated"))
@click.option("--config", "config_file", type=click.Path(), help="YAML config file (same keys as relora.json's config).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.argument("overrides", nargs=-1)
@one_line_errors
def readapt(config_file: str | None, overrides: tuple[str, ...], quiet: bool, **flags: Any) -> None:
    """Re-adapt one adapter to a new base and write adapter + relora.json + events.jsonl.

    \b
    Example:
      relora readapt --old-base old/ --new-base new/ --adapter lora/ \\
        --train train.jsonl --val val.jsonl --out out/ --threshold "old - 0.05" --stop-when-ready

    OVERRIDES: trailing KEY=VALUE pairs, e.g. training.lr=1e-4 search.trials=30.
    """
    from relora.core.run.readapt import readapt as run_readapt

    steps, track = flags.pop("steps"), flags.pop("track")
    flags.update(train=flags.pop("train_file"), val=flags.pop("val_file"), test=flags.pop("test_file"),
                 training={"steps": steps} if steps is not None else None,
                 tracking=[t.strip() for t in track.split(",") if t.strip()] if track else None)
    cfg = build_config(ReadaptConfig, config_file, overrides, flags)
    method_for(cfg, config_file or "command line")  # before anything loads
    click.echo(_summary(run_readapt(cfg, progress=not quiet)))


@main.command("train-adapter")
@click.option("--base", required=True, help="Base model: HF model dir or .gguf.")
@click.option("--train", "train_file", required=True, help=field_help(ReadaptConfig, "train"))
@click.option("--val", "val_file", required=True, help=field_help(ReadaptConfig, "val"))
@click.option("--test", "test_file", help=field_help(ReadaptConfig, "test"))
@click.option("--out", required=True, help=field_help(ReadaptConfig, "out"))
@click.option("--steps", type=int, help=field_help(ReadaptConfig, "training.steps"))
@click.option("--rank", type=int, help=field_help(ReadaptConfig, "training.rank", "; a fresh adapter's default is 16"))
@click.option("--seed", type=int, help=field_help(ReadaptConfig, "seed"))
@click.option("--force", is_flag=True, default=None, help=field_help(ReadaptConfig, "force"))
@click.option("--device", help=field_help(ReadaptConfig, "device"))
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), help=field_help(ReadaptConfig, "dtype"))
@click.option("--config", "config_file", type=click.Path(), help="YAML config file.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.argument("overrides", nargs=-1)
@one_line_errors
def train_adapter(config_file: str | None, overrides: tuple[str, ...], quiet: bool, **flags: Any) -> None:
    """Train a fresh LoRA on a base (to make the "old" adapters of a service).

    Uses the same loop as `readapt --method scratch`; default targets are
    training.target_modules=[q_proj,v_proj] with r=16, lora_alpha=32.
    """
    from relora.core.run.readapt import readapt as run_readapt

    popped = {k: flags.pop(k) for k in ("steps", "rank")}
    training = {k: v for k, v in popped.items() if v is not None}
    flags.update(method="scratch", new_base=flags.pop("base"), train=flags.pop("train_file"), val=flags.pop("val_file"),
                 test=flags.pop("test_file"),
                 training=training or None)
    cfg = build_config(ReadaptConfig, config_file, overrides, flags)
    method_for(cfg, config_file or "command line")  # before anything loads
    click.echo(_summary(run_readapt(cfg, progress=not quiet)))


@main.command()
@click.argument("path")
@click.option("--base", help="Also check that the adapter fits this base (dir or .gguf).")
@one_line_errors
def inspect(path: str, base: str | None) -> None:
    """Show an adapter's rank, scaling, modules and base; with --base, whether it fits."""
    from relora.core.model.adapter import inspect_adapter

    click.echo(json.dumps(inspect_adapter(path, base), indent=2))


@main.command()
def methods() -> None:
    """List the registered methods (baselines and ablations)."""
    width = max(len(name) for name in METHODS)  # the summaries start in one column
    for m in METHODS.values():
        click.echo(f"{m.name:{width}s}  {m.summary}")


@main.command()
@click.argument("path")
@click.option("--base", help="The base it will be served on (dir or .gguf): checks its keys against the base's "
                             "modules and that PEFT's forward changes with it.")
@click.option("--engine", "engines", default="all", show_default=True,
              help="vllm, sglang, lorax, or all (comma-separated).")
@click.option("--max-lora-rank", type=int, default=16, show_default=True, help="vLLM's --max-lora-rank.")
@click.option("--sglang-max-rank", type=int, help="SGLang's --max-lora-rank, if set.")
@click.option("--sglang-targets", help="SGLang's --lora-target-modules, comma-separated, if set.")
@one_line_errors
def preflight(path: str, base: str | None, engines: str, max_lora_rank: int, sglang_max_rank: int | None,
              sglang_targets: str | None) -> None:
    """Check that serving engines load an adapter and that it acts; one line per engine.

    Each rule mirrors the engine's own check (the line names its function): DoRA, modules_to_save, bias,
    rank, keys that match no module of the base (vLLM loads them and does nothing), rsLoRA's scale (SGLang,
    LoRAX), added tokens (SGLang), a layer missing a module type (LoRAX). With --base it also checks that the
    adapter changes the base's logits, and, for an adapter relora wrote, that --base is the base its
    relora_lineage.json names (a warning: no engine checks it). Exit 0 only when every asked engine loads it.
    """
    from relora.serve.preflight import ENGINES, EngineLimits, check, verdict_line
    from relora.core.model.resolve import resolve_base
    from relora.io import cache_root

    asked = ENGINES if engines == "all" else tuple(e.strip() for e in engines.split(","))
    unknown = [e for e in asked if e not in ENGINES]
    if unknown:
        raise InputError("--engine", f"unknown engine(s) {', '.join(unknown)}", f"choose from {', '.join(ENGINES)}")
    base_dir = resolve_base(base, cache_root(None)) if base else None
    limits = EngineLimits(max_lora_rank=max_lora_rank, sglang_max_rank=sglang_max_rank,
                          sglang_targets=[t.strip() for t in sglang_targets.split(",")] if sglang_targets else None)
    found = check(path, asked, base_dir, limits)
    for engine in asked:
        click.echo(verdict_line(engine, found[engine]))
    if any(f.refused for fs in found.values() for f in fs):
        sys.exit(1)
