"""Typed configuration, validated once at the CLI boundary.

A run's config is built from (lowest to highest precedence) the defaults, a
YAML file, dotted ``key=value`` overrides, and explicit CLI flags.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relora.errors import InputError

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    template: str = "{text}\nAnswer:"
    labels: list[str] | None = None  # default: sorted distinct labels of the train file
    val_size: int = Field(512, gt=0)  # D_val: the search's objective, drawn from what the gate set leaves
    # The gate set: readiness, stop_when_ready, fleet gates, flips and the old-service measures are judged on
    # this many validation examples that no probe, gradient step or guard scored. None: half the validation
    # file, at most 256; 0: D_val itself, as the paper does (the record then says "judged on D_val").
    ready_size: int | None = Field(None, ge=0)
    probe_blocks: int = Field(16, gt=0)  # at most this many 64-token blocks of update_probe are scored
    max_length: int = Field(256, gt=8)  # prompt tokens kept (left-truncated)

    @field_validator("template")
    @classmethod
    def _template_has_text(cls, template: str) -> str:
        """Every prompt must carry its example: {text} once at least, and no other field."""
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"is not a format string ({exc}); write literal braces as {{{{ and }}}}") from exc
        unknown = sorted(fields - {"text"})
        if unknown:
            raise ValueError(f"names unknown field(s) {', '.join('{' + f + '}' for f in unknown)}; only {{text}} exists")
        if "text" not in fields:
            raise ValueError("has no {text} field, so every prompt would be the same; add {text}")
        return template

    @field_validator("labels")
    @classmethod
    def _labels_nonempty(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None and any(not label.strip() for label in labels):
            raise ValueError("contains an empty label; every label needs text to score")
        return labels


class TrainConfig(_Strict):
    steps: int = Field(200, ge=0)  # E_total
    e1_fraction: float = Field(0.25, ge=0.0, le=1.0)  # E1 = round(e1_fraction * E_total)
    e1: int | None = Field(None, ge=0)  # explicit E1 wins over e1_fraction
    batch_size: int = Field(32, gt=0)
    micro_batch_size: int = Field(8, gt=0)  # gradient accumulation chunk
    lr: float = Field(5e-4, gt=0)  # eta_1
    lr_min: float = Field(1e-5, ge=0)  # eta_min
    lambda1: float = Field(1e-3, ge=0)
    lambda2: float = Field(1e-4, ge=0)
    eval_every: int = Field(25, gt=0)
    rank: int | None = Field(None, gt=0)  # output rank; default: the old adapter's r
    lora_alpha: float | None = Field(None, gt=0)  # default: the old adapter's
    target_modules: list[str] = ["q_proj", "v_proj"]  # train-adapter only
    eval_batch_size: int = Field(16, gt=0)  # smaller batches are faster on CPU (cache-resident)
    # coupled: the anchor's gradient joins the loss's (Eq. 20, inside AdamW's scaling); decoupled:
    # P <- P - lr_t * lambda_t * (P - P_init) after each step, as AdamW decouples weight decay
    anchor: Literal["coupled", "decoupled"] = "coupled"

    def stage1_steps(self) -> int:
        return min(self.e1 if self.e1 is not None else round(self.e1_fraction * self.steps), self.steps)


class SearchConfig(_Strict):
    trials: int = Field(20, gt=0)  # T, total probes including the initial design
    n_init: int = Field(5, gt=0)  # space-filling design, PortLLM point first
    alpha_bounds: tuple[float, float] = (-1.0, 1.0)
    beta_bounds: tuple[float, float] = (0.0, 2.0)
    xi: float = Field(0.01, ge=0)
    grid_size: int = Field(10, gt=1)  # relora-grid: grid_size x grid_size probes
    svd: Literal["exact", "randomized"] = "randomized"
    raw_samples: int = Field(1024, gt=0)  # Sobol points where EI is evaluated in one batch
    num_restarts: int = Field(2, gt=0)  # best raw samples polished by L-BFGS
    screen_fraction: float = Field(0.25, gt=0, le=1)  # BO probes score this share of D_val (1 = all)
    rescore_top: int = Field(3, gt=0)  # best screened points re-scored on all of D_val
    ei_stop: float = Field(0.02, ge=0)  # stop when max EI < ei_stop * std(losses seen); 0 = never
    # relora: when earlier searches on this base update seed the design, explore at most this many
    # probes (with rescore_top 3, at most 8 in all): the earlier best points already found the basin
    seeded_trials: int = Field(5, gt=0)
    # bo | gradient, for every searched method; None: the method's own (relora-grid keeps its grid)
    strategy: Literal["bo", "gradient"] | None = None
    # gradient: one (alpha, beta) per group of modules, learned by Adam on training batches from the
    # best known point (PortLLM, the revert point, earlier searches on this base pair)
    groups: Literal["global", "type", "layer", "layer-type"] = "layer-type"
    gradient_steps: int = Field(8, gt=0)
    gradient_lr: float = Field(0.05, gt=0)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> SearchConfig:
        for name in ("alpha_bounds", "beta_bounds"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name} must be (low, high) with low < high")
        return self


class ReadaptConfig(_Strict):
    old_base: str | None = None
    new_base: str
    adapter: str | None = None
    train: str
    val: str
    test: str | None = None
    # Update retention: LM loss on this text (or JSONL "text") file, of the kind the base update was made for
    update_probe: str | None = None
    out: str
    method: str = "portllm-ft"  # a name in relora.core.methods.METHODS: DEFAULT_METHOD, the fleet race's winner
    threshold: float | None = Field(None, gt=0.0, le=1.0)
    stop_when_ready: bool = False
    seed: int = 0
    force: bool = False
    cache_dir: str | None = None  # default: $RELORA_CACHE or ~/.cache/relora
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")  # auto: CUDA when there is one
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # the frozen base: auto = fp32 on CPU, bf16 on GPU
    data: DataConfig = DataConfig()
    training: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()

    @model_validator(mode="after")
    def _inputs_for_method(self) -> ReadaptConfig:
        # Imported here: the registry's init strategies use this module's types
        from relora.core.methods import method_named

        method = method_named(self.method)
        if method.needs_adapter and not self.adapter:
            raise ValueError(f"method {self.method} needs --adapter (the old LoRA)")
        if method.needs_old_base and not self.old_base:
            raise ValueError(f"method {self.method} needs --old-base (to compute the base delta)")
        return self


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set tree['a']['b'] for 'a.b' (dashes read as underscores)."""
    parts = dotted.replace("-", "_").split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def parse_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """'training.lr=1e-4' style overrides; values are parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(None, f"override {pair!r} is not key=value", "write e.g. training.lr=1e-4")
        key, raw = pair.split("=", 1)
        set_dotted(tree, key.strip(), override_value(raw))
    return tree


def override_value(raw: str) -> Any:
    """A YAML scalar, list or mapping; text that is not valid YAML, or that only YAML reads as a mapping
    ("Answer:"), stays the text it was, and the config's own validation judges it."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, dict) and not raw.lstrip().startswith("{"):
        return raw
    return value


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "config file not found", "pass an existing YAML file to --config")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(p, f"invalid YAML ({exc.__class__.__name__})", "fix the YAML syntax") from exc
    if not isinstance(loaded, dict):
        raise InputError(p, "config must be a YAML mapping", "write key: value pairs at the top level")
    return loaded


def build_config(
    model: type[_Strict],
    config_file: str | None,
    overrides: tuple[str, ...] | list[str],
    flags: dict[str, Any],
) -> Any:
    """Defaults < YAML < key=value < explicit flags, validated once."""
    tree = load_yaml(config_file) if config_file else {}
    tree = deep_merge(tree, parse_overrides(overrides))
    tree = deep_merge(tree, {k: v for k, v in flags.items() if v is not None})
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "config"
        source = config_file or "command line"
        raise InputError(source, f"{where}: {err['msg']}", f"correct '{where}' (see relora --help)") from exc
