"""PEFT LoRA adapters: read from disk, check against a base, wire into a model."""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from relora.errors import InputError
from relora.core.model.weights import WeightReader
from relora.core.math.ops import LowRank, lora_scaling
from relora.core.model.engines import rank_warnings

PEFT_PREFIX = "base_model.model."
LINEAGE_FILE = "relora_lineage.json"  # a sidecar: PEFT warns on unknown keys in adapter_config.json


@dataclass
class LoraAdapter:
    path: Path | None
    r: int
    lora_alpha: float
    use_rslora: bool
    target_modules: list[str] | str
    factors: dict[str, LowRank] = field(default_factory=dict)
    base_model_name_or_path: str | None = None
    # PEFT options that pick which layers the targets wrap; carried to the output and to PEFT as they are
    layer_options: dict[str, Any] = field(default_factory=dict)

    @property
    def scaling(self) -> float:
        return lora_scaling(self.lora_alpha, self.r, self.use_rslora)

    @property
    def modules(self) -> list[str]:
        return sorted(self.factors)


def module_of(key: str) -> tuple[str, str] | None:
    """'base_model.model.X.lora_A.weight' -> ('X', 'A'); adapter name infixes allowed."""
    for part in ("A", "B"):
        marker = f".lora_{part}."
        if marker in key and key.endswith(".weight"):
            module = key.split(marker)[0]
            return module.removeprefix(PEFT_PREFIX), part
    return None


def adapter_files(root: Path) -> tuple[Path, Path]:
    """A PEFT LoRA directory's config and weights, or one line naming the one that is missing."""
    cfg_path, weights_path = root / "adapter_config.json", root / "adapter_model.safetensors"
    for needed in (cfg_path, weights_path):
        if not needed.is_file():
            raise InputError(needed, "adapter file missing", "pass a PEFT LoRA directory (save_pretrained output)")
    return cfg_path, weights_path


def option_set(value: Any) -> bool:
    """Whether a PEFT config option is in use (PEFT writes unused ones as null, false, empty or "none")."""
    return value not in (None, False, [], {}, "none")


def read_adapter(path: str | Path) -> LoraAdapter:
    """A PEFT LoRA directory, checked: config types, supported kind, rank against the weights, finite weights."""
    root = Path(path)
    cfg_path, weights_path = adapter_files(root)
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(cfg_path, f"invalid JSON ({exc.__class__.__name__})", "restore the adapter's config") from exc
    check_supported(cfg_path, cfg)
    try:
        tensors = load_file(weights_path)
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise InputError(weights_path, f"unreadable weights ({exc.__class__.__name__})",
                         "restore the adapter from a good copy") from exc
    factors = _factors(weights_path, tensors)
    r, alpha = _rank_and_alpha(cfg_path, cfg, factors)
    _check_targets_cover(cfg_path, cfg.get("target_modules"), factors)
    return LoraAdapter(
        path=root, r=r, lora_alpha=alpha, use_rslora=bool(cfg.get("use_rslora", False)),
        target_modules=cfg.get("target_modules") or sorted(factors), factors=factors,
        base_model_name_or_path=cfg.get("base_model_name_or_path"),
        layer_options={k: cfg[k] for k in LAYER_OPTIONS if option_set(cfg.get(k))},
    )


def check_supported(cfg_path: Path, cfg: Any) -> None:
    """Refuse what relora would silently get wrong: not LoRA, DoRA, per-module ranks."""
    if not isinstance(cfg, dict):
        raise InputError(cfg_path, f"is a JSON {type(cfg).__name__}, not an object",
                         "restore the adapter's config (PEFT's save_pretrained writes a JSON object)")
    if cfg.get("peft_type", "LORA") != "LORA" or "r" not in cfg:
        raise InputError(cfg_path, "not a LoRA adapter config", "pass a PEFT LoRA adapter")
    if cfg.get("use_dora"):
        raise InputError(cfg_path, "DoRA adapters (use_dora: true) are not supported: their magnitude vectors "
                         "would be dropped", "pass a plain LoRA adapter, or merge the DoRA adapter into its base")
    for key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            raise InputError(cfg_path, f"per-module ranks or alphas ({key}) are not supported",
                             f"pass an adapter with one r and lora_alpha for every module (empty {key})")
    if not isinstance(cfg.get("use_rslora", False), bool):
        raise InputError(cfg_path, f"use_rslora must be true or false, got {cfg['use_rslora']!r}",
                         "set use_rslora to true or false")
    for key, why, fix in UNCARRIED_OPTIONS:
        value = cfg.get(key)
        if option_set(value):
            raise InputError(cfg_path, f"{key}: {value!r} is not supported: {why}", fix)
    init = cfg.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(("pissa", "olora", "corda", "eva", "loftq")):
        raise InputError(cfg_path, f"init_lora_weights: {init!r} is not supported: PEFT re-derives the base from it on "
                         "load, so W + s·B·A is not what the adapter serves",
                         "convert it to a plain LoRA first (PEFT's path_initial_model_for_weight_conversion)")
    targets = cfg.get("target_modules") or []
    embedded = sorted({t for t in (targets if isinstance(targets, list) else []) if t in EMBEDDING_MODULES})
    if embedded:
        raise InputError(cfg_path, f"LoRA on {', '.join(embedded)} is not supported: relora re-adapts linear layers "
                         "only and would drop it", "retrain without the embedding in target_modules")


# PEFT options that change what an adapter serves and that relora cannot carry to the output: refused in one
# line rather than silently dropped (each was checked to change PEFT's outputs)
UNCARRIED_OPTIONS = (
    ("bias", "the adapter's trained biases would be dropped", "pass an adapter trained with bias: \"none\""),
    ("lora_bias", "the lora_B biases would be dropped", "pass an adapter trained with lora_bias: false"),
    ("modules_to_save", "the fully trained modules it carries would be dropped",
     "pass an adapter without modules_to_save (or merge those modules into both bases)"),
    ("trainable_token_indices", "its trained token embeddings would be dropped",
     "pass an adapter without trainable_token_indices"),
    ("fan_in_fan_out", "relora reads lora_B @ lora_A as (out, in) like torch.nn.Linear",
     "pass an adapter for Linear layers (fan_in_fan_out: false)"),
)
# options that select layers: carried (PEFT applies them on load; vLLM and SGLang load the weights that are there)
LAYER_OPTIONS = ("layers_to_transform", "layers_pattern", "exclude_modules")
EMBEDDING_MODULES = {"embed_tokens", "lm_head", "wte", "word_embeddings", "embed_out"}


def _factors(weights_path: Path, tensors: dict[str, torch.Tensor]) -> dict[str, LowRank]:
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        found = module_of(key)
        if found:
            halves.setdefault(found[0], {})[found[1]] = tensor.float()
    factors = {}
    for module, parts in halves.items():
        if set(parts) != {"A", "B"}:
            raise InputError(weights_path, f"module {module} lacks lora_A or lora_B", "restore the adapter")
        if not (torch.isfinite(parts["A"]).all() and torch.isfinite(parts["B"]).all()):
            raise InputError(weights_path, f"module {module} has NaN or infinite weights",
                             "restore the adapter from a good copy")
        factors[module] = LowRank(B=parts["B"], A=parts["A"])
    if not factors:
        raise InputError(weights_path, "no LoRA weights found", "pass a PEFT LoRA adapter")
    return factors


def _check_targets_cover(cfg_path: Path, targets: Any, factors: dict[str, LowRank]) -> None:
    """target_modules must name the modules the weights belong to, or PEFT wraps different layers."""
    if targets is None:
        return
    if isinstance(targets, str):  # PEFT reads a string as a regex over full module names
        uncovered = [m for m in factors if not re.fullmatch(targets, m)]
        if uncovered:
            raise InputError(cfg_path, f"target_modules {targets!r} does not match the weights' module {uncovered[0]}",
                             "fix the target_modules pattern in adapter_config.json")
        return
    names = targets
    if not isinstance(names, list) or not all(isinstance(t, str) for t in names):
        raise InputError(cfg_path, f"target_modules must be a list of module names, got {targets!r}",
                         "restore target_modules, e.g. [\"q_proj\", \"v_proj\"]")
    suffixes = sorted({m.rsplit(".", 1)[-1] for m in factors})
    for module in factors:
        if not any(module == t or module.endswith("." + t) for t in names):
            raise InputError(cfg_path, f"target_modules {names} do not cover the weights' module {module}",
                             f"set target_modules to {suffixes}")
    for name in names:
        if not any(m == name or m.endswith("." + name) for m in factors):
            raise InputError(cfg_path, f"target_modules names {name}, which has no weights in the adapter (PEFT would "
                             "load it as a zero LoRA)", f"set target_modules to {suffixes}")


def _rank_and_alpha(cfg_path: Path, cfg: dict[str, Any], factors: dict[str, LowRank]) -> tuple[int, float]:
    """r must be the weights' rank (a positive int), lora_alpha a number: no bool or string is coerced."""
    first = next(iter(factors.values()))
    rank = first.rank
    r = cfg["r"]
    if isinstance(r, bool) or not isinstance(r, int) or r != rank:
        raise InputError(cfg_path, f"r is {r!r}, but the lora_A weights have rank {rank}", f"set r to {rank}")
    alpha = cfg.get("lora_alpha", r)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha) or alpha <= 0:
        raise InputError(cfg_path, f"lora_alpha must be a positive number, got {alpha!r}",
                         f"set lora_alpha to the value the adapter was trained with (PEFT's default is r = {r})")
    return r, float(alpha)


def peft_config(spec: LoraAdapter) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=spec.r, lora_alpha=spec.lora_alpha, use_rslora=spec.use_rslora,
                      target_modules=spec.target_modules, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      **spec.layer_options)


def check_selection(adapter: LoraAdapter, base: WeightReader) -> None:
    """The modules PEFT wraps on this base (target_modules, layers_to_transform, exclude_modules) are the
    modules the weights have: one it wraps without weights would load as a zero LoRA, one it skips is dropped."""
    from peft.tuners.tuners_utils import check_target_module_exists

    cfg_path = Path(adapter.path or ".") / "adapter_config.json"
    try:
        config = peft_config(adapter)
    except (TypeError, ValueError) as exc:
        raise InputError(cfg_path, f"PEFT refuses its options ({exc})", "fix the options it names") from None
    wrapped = {m for m in base.module_names() if check_target_module_exists(config, m)}
    for module in sorted(wrapped ^ set(adapter.factors)):
        why = "PEFT would wrap it, but the weights lack it" if module in wrapped else \
            "the weights have it, but PEFT's target options skip it"
        raise InputError(cfg_path, f"module {module}: {why}",
                         "make target_modules, layers_to_transform and exclude_modules name the modules the weights have")


def check_fits(adapter: LoraAdapter, base: WeightReader, rank: int) -> None:
    """Every adapter module exists in the base with matching shapes; rank fits; PEFT selects exactly them."""
    for module, lr in adapter.factors.items():
        name = f"{module}.weight"
        if name not in base:
            raise InputError(adapter.path, f"module {module} is missing from base {base.model_dir}",
                             "pass the base this adapter was trained for")
        d, k = base.shape(name)
        if lr.B.shape != (d, adapter.r) or lr.A.shape != (adapter.r, k):
            raise InputError(adapter.path, f"module {module}: B{tuple(lr.B.shape)} A{tuple(lr.A.shape)} "
                             f"do not fit weight ({d}, {k}) at r={adapter.r}", "pass the matching base")
        if rank > min(d, k):
            raise InputError(adapter.path, f"rank {rank} exceeds min(d, k) = {min(d, k)} for {module}",
                             f"use training.rank <= {min(d, k)}")
    check_selection(adapter, base)


def attach_lora(model: torch.nn.Module, spec: LoraAdapter, seed: int) -> torch.nn.Module:
    """Wrap a base in a PEFT LoRA of spec's shape; spec.factors (if any) are loaded."""
    from peft import get_peft_model

    config = peft_config(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # PEFT's default init (kaiming A) must be reproducible
        peft_model = get_peft_model(model, config)
    if spec.factors:
        wrapped = set(lora_modules(peft_model))
        if wrapped != set(spec.factors):
            missing = sorted(wrapped ^ set(spec.factors))[:3]
            raise InputError(spec.path, f"target_modules and weights disagree (e.g. {missing})",
                             "fix target_modules in adapter_config.json")
        set_factors(peft_model, spec.factors)
    return peft_model


def lora_modules(peft_model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Module name (as in the base's state dict) -> its PEFT LoRA layer."""
    found = {}
    for name, mod in peft_model.named_modules():
        if hasattr(mod, "lora_A") and isinstance(getattr(mod, "lora_A"), torch.nn.ModuleDict) and mod.lora_A:
            found[name.removeprefix(PEFT_PREFIX)] = mod
    return found


@torch.no_grad()
def set_factors(peft_model: torch.nn.Module, factors: dict[str, LowRank]) -> None:
    for name, mod in lora_modules(peft_model).items():
        mod.lora_A["default"].weight.copy_(factors[name].A)
        mod.lora_B["default"].weight.copy_(factors[name].B)


def lora_parameters(peft_model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """A then B of every module, in a fixed order (the anchor pairs with it)."""
    params = []
    for mod in lora_modules(peft_model).values():
        params += [mod.lora_A["default"].weight, mod.lora_B["default"].weight]
    return params


def save_adapter(peft_model: torch.nn.Module, out_dir: Path, base_name: str, lineage: dict[str, Any],
                 portable: bool = False) -> list[str]:
    """PEFT's own save (PeftModel.from_pretrained reads it), a lineage sidecar, and the warnings a serving engine
    would raise. portable: rsLoRA's sqrt(r) folded into lora_B, for engines that scale by alpha/r."""
    config = peft_model.peft_config["default"]
    config.base_model_name_or_path = base_name
    peft_model.save_pretrained(str(out_dir))
    folded = portable and bool(config.use_rslora)
    if folded:
        fold_rslora(out_dir)
    (out_dir / LINEAGE_FILE).write_text(json.dumps(lineage | {"rslora_folded": folded}, indent=1) + "\n")
    return rank_warnings(config.r)


def fold_rslora(adapter_dir: Path) -> None:
    """Rewrite a saved rsLoRA adapter as a plain one that computes the same: alpha/sqrt(r) = sqrt(r) * alpha/r,
    so lora_B is multiplied by sqrt(r) and use_rslora turned off (SGLang and LoRAX's PEFT scale by alpha/r)."""
    from safetensors.torch import save_file

    cfg_path, weights_path = adapter_files(adapter_dir)
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    tensors = load_file(weights_path)
    factor = math.sqrt(cfg["r"])
    folded = {k: (t * factor if (module_of(k) or ("", ""))[1] == "B" else t) for k, t in tensors.items()}
    save_file(folded, weights_path, metadata={"format": "pt"})
    cfg_path.write_text(json.dumps(cfg | {"use_rslora": False}, indent=2, sort_keys=True))


def describe(adapter: LoraAdapter) -> dict[str, Any]:
    return {
        "path": str(adapter.path), "r": adapter.r, "lora_alpha": adapter.lora_alpha,
        "use_rslora": adapter.use_rslora, "scaling": adapter.scaling,
        "target_modules": adapter.target_modules, "n_modules": len(adapter.factors),
        "base_model_name_or_path": adapter.base_model_name_or_path, **adapter.layer_options,
    }


def inspect_adapter(path: str, base: str | None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """describe() of an adapter, plus whether it fits a base when one is given."""
    from relora.core.model.resolve import resolve_base
    from relora.io import cache_root

    adapter = read_adapter(path)
    info = describe(adapter)
    info["modules"] = adapter.modules
    if base is not None:
        reader = WeightReader(resolve_base(base, cache_root(cache_dir)))
        try:
            check_fits(adapter, reader, adapter.r)
            info["fits_base"] = True
        except InputError as exc:
            info["fits_base"], info["fit_problem"] = False, exc.problem
    return info
