"""Fleet commands: rollout, status, report, fleet-demo (the relora[fleet] extra)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from relora.cli.app import main, lab, one_line_errors, parse_methods, parse_seeds, require_extra
from relora.errors import InputError, Unwritable
from relora.lab.profiles import profile_names


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
    require_extra("fleet", "sqlalchemy", "matplotlib")
    from relora.fleet.rollout import rollout
    from relora.fleet.config import load_fleet
    from relora.fleet.report import write_fleet_report

    fleet = load_fleet(fleet_file)
    counts = rollout(fleet, retry_failed=retry_failed, progress=not quiet)
    steps = fleet.readapt_config(fleet.adapters[0]).training.steps
    report = write_fleet_report(fleet.out, scratch_steps=steps, url=fleet.ledger)
    page = report.parent / "report" / "index.html"
    click.echo(json.dumps({"counts": counts, "report": str(report), "page": str(page)}, indent=2))
    if counts.get("failed"):
        sys.exit(1)


@main.command("status")
@click.argument("out")
@click.option("--ledger", help="Ledger URL, if not OUT/ledger.sqlite3.")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until nothing is pending or running.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between redraws with --watch.")
@one_line_errors
def status_cmd(out: str, ledger: str | None, watch: bool, interval: float) -> None:
    """Show the fleet ledger (safe while a rollout runs); --watch keeps it on screen as the rollout goes."""
    require_extra("fleet", "sqlalchemy", "matplotlib")
    from relora.fleet.report import open_ledger, status_lines

    fleet_ledger = open_ledger(out, ledger)
    while True:
        rows = fleet_ledger.rows()
        if watch:
            click.clear()
        click.echo(status_lines(rows))
        if not watch or not any(r["state"] in ("pending", "running") for r in rows):
            return
        time.sleep(interval)


@main.command("report")
@click.argument("out")
@click.option("--ledger", help="Ledger URL, if not OUT/ledger.sqlite3.")
@one_line_errors
def report_cmd(out: str, ledger: str | None) -> None:
    """Write OUT/report/index.html (the fleet page), OUT/fleet_report.md and PNG plots from the ledger."""
    require_extra("fleet", "sqlalchemy", "matplotlib")
    from relora.fleet.report import write_fleet_report

    try:
        click.echo(str(write_fleet_report(out, url=ledger)))
    except OSError as exc:
        raise Unwritable(out, f"cannot write the report there ({exc.strerror})",
                         "make the rollout directory writable, or copy it and report on the copy") from None


RACE_PROFILES = profile_names("race")  # configs/race/*.yaml


@lab.command("race")
@click.argument("fleet_file", metavar="[FLEET.yaml]", required=False)
@click.option("--profile", type=click.Choice(RACE_PROFILES),
              help="Race relora's own fleet instead of FLEET.yaml: 12 WordNet services on SmolLM2, built and cached. "
                   "fleet-race-strong and fleet-race-strong-2: portllm, portllm-ft, relora-paper and relora after one "
                   "of two strong updates; fleet-strengths-mild|moderate|strong: portllm-ft against relora-reuse, 50 "
                   "steps, after the pilot's update of each strength. Each profile has its own methods and seeds.")
@click.option("--out", required=True, help="Where each (seed, method) rollout, summary.json and report.md go.")
@click.option("--methods", help="Comma-separated methods (default: the profile's, else portllm,portllm-ft,relora-paper,relora).")
@click.option("--seeds", help="Comma-separated seeds (default: the profile's, else 0,1,2).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--summary-only", is_flag=True, help="Only summarize the rollouts under --out that finished.")
@click.option("--earlier-summary", type=click.Path(dir_okay=False),
              help="An earlier summary.json of this race: its per-seed figures stand in for seeds whose rollouts are "
                   "not under --out (their folders lost); the new summary names the seeds it took so.")
@one_line_errors
def race_cmd(fleet_file: str | None, profile: str | None, out: str, **options: Any) -> None:
    """Roll one fleet out once per method and seed, each with its own cache, and compare them.

    Every method gets the fleet's gate, budgets and stop-when-ready; the report gives each
    method's compute to all final, share ready at zero steps, time to ready, services never
    ready, quality against the old service, negative flips and update retention. Resumable, at
    the revision its rollouts ran at: a checkout that moved on is refused (race from a worktree).
    """
    require_extra("fleet", "sqlalchemy", "matplotlib")
    methods, seeds, progress, roll = options["methods"], options["seeds"], not options["quiet"], not options["summary_only"]
    if (fleet_file is None) == (profile is None):
        raise InputError("relora lab race", "needs either FLEET.yaml or --profile, not both or neither",
                         "name a fleet file, or one of --profile " + "|".join(RACE_PROFILES))
    from relora.fleet.race import RacePlan, run_race

    plan = RacePlan(methods=parse_methods(methods) or (), seeds=parse_seeds(seeds) or (), progress=progress,
                    roll=roll, earlier=options["earlier_summary"])
    if profile is not None:
        from relora.lab.race import run_fleet_race

        summary = run_fleet_race(profile, out, plan)  # empty methods or seeds: the profile's
    else:
        from relora.fleet.config import load_fleet

        summary = run_race(load_fleet(fleet_file), out, plan)  # empty methods or seeds: the race's defaults
    click.echo(json.dumps({m: {k: v for k, v in info.items() if k != "per_seed"}
                           for m, info in summary["methods"].items()}, indent=2))


@lab.command("fleet-demo")
@click.option("--out", default="runs/fleet", show_default=True, help="Where the demo fleet is built.")
@one_line_errors
def fleet_demo_cmd(out: str) -> None:
    """Build the demo fleet (8 WordNet services on SmolLM2) and print its fleet.yaml path."""
    require_extra("fleet", "sqlalchemy", "matplotlib")
    from relora.lab.demo import build_demo_fleet

    click.echo(str(build_demo_fleet(out)))
