"""relora: re-adapt LoRA adapters to an updated base model (arXiv 2606.02606).

The public API is four names::

    from relora import METHODS, ReadaptConfig, RunRecord, readapt

    cfg = ReadaptConfig(old_base="old/", new_base="new/", adapter="lora/", train="train.jsonl",
                        val="val.jsonl", out="lora-new/", method="relora", threshold=0.8)
    record: RunRecord = readapt(cfg)

See ``help(relora.readapt)``. ``relora.core`` is the library, on four floors (``math``, ``model``,
``method``, ``run``); beside it sit ``relora.serve`` (preflight), ``relora.fleet`` (rollouts of many
adapters) and ``relora.lab`` (benchmarks, races, perf, demos); ``relora.cli`` is the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["METHODS", "ReadaptConfig", "RunRecord", "readapt"]

if TYPE_CHECKING:
    from relora.core.model.config import ReadaptConfig
    from relora.core.method.methods import METHODS
    from relora.core.run.readapt import readapt
    from relora.core.method.record import RunRecord

_WHERE = {"METHODS": "relora.core.method.methods", "ReadaptConfig": "relora.core.model.config",
          "RunRecord": "relora.core.method.record", "readapt": "relora.core.run.readapt"}


def __getattr__(name: str) -> Any:
    """Imported on first use, so `relora --help` does not load torch."""
    if name not in _WHERE:
        raise AttributeError(f"module 'relora' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)
