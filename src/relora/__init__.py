"""relora: re-adapt LoRA adapters to an updated base model (arXiv 2606.02606).

The public API is four names::

    from relora import METHODS, ReadaptConfig, RunRecord, readapt

    cfg = ReadaptConfig(old_base="old/", new_base="new/", adapter="lora/", train="train.jsonl",
                        val="val.jsonl", out="lora-new/", method="relora", threshold=0.8)
    record: RunRecord = readapt(cfg)

See ``help(relora.readapt)``. The package has three rooms: ``relora.core`` (the
library), ``relora.bench`` (benchmarks, the paper's tables, perf) and
``relora.fleet`` (rollouts of many adapters); ``relora.cli`` is the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["METHODS", "ReadaptConfig", "RunRecord", "readapt"]

if TYPE_CHECKING:
    from relora.core.config import ReadaptConfig
    from relora.core.methods import METHODS
    from relora.core.readapt import readapt
    from relora.core.record import RunRecord

_WHERE = {"METHODS": "relora.core.methods", "ReadaptConfig": "relora.core.config",
          "RunRecord": "relora.core.record", "readapt": "relora.core.readapt"}


def __getattr__(name: str) -> Any:
    """Imported on first use, so `relora --help` does not load torch."""
    if name not in _WHERE:
        raise AttributeError(f"module 'relora' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)
