"""Groups of LoRA modules by layer and module type: the searches learn one coefficient pair per group, and
preflight checks that each module type covers the same layers."""

from __future__ import annotations

import re
from typing import Literal

Groups = Literal["global", "type", "layer", "layer-type"]


def group_of(module: str, groups: Groups) -> str:
    """The coefficient group of a module name such as 'model.layers.3.self_attn.q_proj'."""
    kind = module.rsplit(".", 1)[-1]
    match = re.search(r"\.(\d+)\.", f".{module}.")
    layer = match.group(1) if match else "-"
    return {"global": "all", "type": kind, "layer": layer, "layer-type": f"{layer}.{kind}"}[groups]
