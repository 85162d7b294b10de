"""The `relora` command group and what every subcommand shares: one-line errors, missing extras.

Config precedence: defaults < --config FILE.yaml < key=value overrides < flags.
Bad input prints one line naming the file and the fix, and exits with 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from relora.errors import InputError, Interrupted, RolloutStopped, Unwritable


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            click.echo(f"relora: error: {exc}", err=True)
            sys.exit(3 if isinstance(exc, Unwritable) else 2)
        except RolloutStopped as exc:
            click.echo(f"relora: stopped: {exc}", err=True)
            sys.exit(3)
        except Interrupted as exc:
            click.echo(f"relora: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="relora")
def main() -> None:
    """Re-adapt LoRA adapters to an updated base model (arXiv 2606.02606).

    When a base model is updated (old base -> new base), `relora readapt`
    makes an adapter trained on the old base ready for the new one, and judges
    it on validation examples no search has seen. The default method fine-tunes
    the old adapter until it clears its gate (portllm-ft, the fleet race's
    winner); --method relora first fuses the old adapter with a rank-r
    projection of the base delta. `relora rollout` does a whole fleet.

    `relora demo` is the main job on a real model: SmolLM2 and WordNet, every
    method, a summary and plots. `relora lab` holds the commands that make
    relora's own figures (benchmarks, races, perf).
    """


@main.group("lab")
def lab() -> None:
    """The lab: the commands that make relora's figures (docs/results).

    The paper's benchmark (`relora demo` is its short run), races of fleets
    across methods and seeds, perf, and the tools they use: evolve (make an updated
    base), task (build a WordNet task), backbones, fleet-demo.
    """


def field_help(model: Any, key: str, note: str = "") -> str:
    """An option's help is its config field's description (dotted keys reach nested models), so the two cannot
    drift; note adds what only the command line has to say."""
    *parents, name = key.split(".")
    for part in parents:
        model = model.model_fields[part].annotation
    text = model.model_fields[name].description
    if text is None:
        raise ValueError(f"{model.__name__}.{name} has no description")
    return f"{text} ({key}){note}"


def parse_seeds(seeds: str | None) -> tuple[int, ...] | None:
    """--seeds 0,1,2 as a tuple (None: the profile's own)."""
    try:
        return tuple(int(s) for s in seeds.split(",")) if seeds else None
    except ValueError as exc:
        raise InputError("--seeds", f"{seeds!r} is not a comma-separated list of integers", "write e.g. --seeds 0,1,2") from exc


def parse_methods(methods: str | None) -> tuple[str, ...] | None:
    return tuple(m.strip() for m in methods.split(",")) if methods else None


def require_extra(extra: str, *modules: str) -> None:
    """A command of the bench or fleet room says which extra to install when its dependencies are missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(None, f"this command needs {', '.join(missing)}, which the relora core does not install",
                         f"pip install 'relora[{extra}]'")
