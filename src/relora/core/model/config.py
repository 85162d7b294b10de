"""Typed configuration, validated once at the CLI boundary.

A run's config is built from (lowest to highest precedence) the defaults, a
YAML file, dotted ``key=value`` overrides, and explicit CLI flags.
"""

from __future__ import annotations

import math
import re
import string
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relora.errors import InputError

D = Field  # every key's description is its documentation: docs/configuration.md's table is generated from it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    template: str = D("{text}\nAnswer:", description="the prompt; `{text}` is the example's text")
    labels: list[str] | None = D(None, description="the label set; unset: the sorted distinct labels of the train file")
    val_size: int = D(512, gt=0, description="D_val, sampled with the seed from what the gate set leaves: the "
                                             "search's objective")
    ready_size: int | None = D(None, ge=0, description=(
        "the gate set: readiness, `stop_when_ready`, fleet gates, negative flips and the old-service and fallback "
        "measures are judged on this many validation examples, drawn first with the seed and never scored by a "
        "probe, a gradient step, a screen or the keep/reject guard, and fixed across seeds. Unset: half of the "
        "validation file, at most 2048. `0`: "
        "D_val itself, as the paper does (`relora.json` then says `\"judged_on\": \"D_val\"`). A file too small "
        "to leave 4 examples on each side is refused"))
    probe_blocks: int = D(16, gt=0, description="at most this many 64-token blocks of `update_probe` are scored")
    max_length: int = D(256, gt=8, description="prompt tokens kept (left-truncated)")

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
    steps: int = D(200, ge=0, description="E_total, optimizer steps")
    e1_fraction: float = D(0.25, ge=0.0, le=1.0, description=(
        "E1 = round(e1_fraction · E_total), the strong anchor's steps. The paper gives no E1; a quarter keeps "
        "the strong anchor through the early recovery phase, where the paper's Fig. 2(d) shows its benefit"))
    e1: int | None = D(None, ge=0, description="an explicit E1; wins over `e1_fraction`")
    batch_size: int = D(32, gt=0, description="examples per optimizer step")
    micro_batch_size: int = D(8, gt=0, description="gradient accumulation chunk (exact: normalised by the tokens "
                                                   "of the whole batch)")
    lr: float = D(5e-4, gt=0, description="η1, the peak learning rate (paper)")
    lr_min: float = D(1e-5, ge=0, description="η_min, the end of the cosine (paper)")
    lambda1: float = D(1e-3, ge=0, description="λ1, the anchor's strength for the first E1 steps (paper)")
    lambda2: float = D(1e-4, ge=0, description="λ2, the anchor's strength after E1 (paper)")
    eval_every: int = D(25, gt=0, description="steps between readiness checks (written to `events.jsonl`)")
    rank: int | None = D(None, gt=0, description="the output adapter's rank; unset: the old adapter's r")
    lora_alpha: float | None = D(None, gt=0, description="the output adapter's lora_alpha; unset: the old adapter's")
    target_modules: list[str] = D(["q_proj", "v_proj"], description="`train-adapter` only: the modules a fresh "
                                                                    "LoRA adapts")
    eval_batch_size: int = D(16, gt=0, description="evaluation batch; on a CPU, 16 was faster than 32 or 64")
    anchor: Literal["coupled", "decoupled"] = D("coupled", description=(
        "`coupled`: the anchor's gradient joins the loss's (Eq. 20, inside AdamW's scaling); `decoupled`: "
        "P ← P − η_t·λ_t·(P − P_init) after each step, as AdamW decouples weight decay"))

    def stage1_steps(self) -> int:
        return min(self.e1 if self.e1 is not None else round(self.e1_fraction * self.steps), self.steps)


class SearchConfig(_Strict):
    trials: int = D(20, gt=0, description="T, BO's probes including the initial design")
    n_init: int = D(5, gt=0, description="the initial design: the PortLLM point (0, 1), then scrambled Sobol points")
    alpha_bounds: tuple[float, float] = D((-1.0, 1.0), description="α's box; negative α is allowed: the optimum "
                                                                   "can lie there")
    beta_bounds: tuple[float, float] = D((0.0, 2.0), description="β's box")
    xi: float = D(0.01, ge=0, description="Expected Improvement's trade-off ξ")
    min_retention: float | None = D(None, le=1.0, description=(
        "a floor on the searched start's update retention, measured on `update_probe` before training: a start "
        "that keeps less of the update than this (the revert point keeps about none) is replaced by PortLLM's "
        "(the old adapter as is, retention 1). Unset: the search's start is kept whatever it keeps"))
    grid_size: int = D(10, gt=1, description="`relora-grid`: grid_size × grid_size probes")
    svd: Literal["exact", "randomized"] = D("randomized", description=(
        "Π_r by randomized SVD (Halko et al., 4 power iterations, seeded; O(dkr)) or the exact truncation"))
    raw_samples: int = D(1024, gt=0, description="Sobol points where EI is evaluated in one batch")
    num_restarts: int = D(2, gt=0, description="the best raw samples that L-BFGS polishes")
    screen_fraction: float = D(0.25, gt=0, le=1, description="the share of D_val each BO probe scores (a seeded "
                                                            "random subset); 1: every probe on all of D_val")
    rescore_top: int = D(3, gt=0, description="the best screened points re-scored on all of D_val; the choice is "
                                              "made among these")
    ei_stop: float = D(0.02, ge=0, description="stop exploring when the best EI is below this many standard "
                                               "deviations of the losses seen; 0: always run all T probes")
    seeded_trials: int = D(5, gt=0, description=(
        "the explore budget when earlier searches for other adapters on this base update seed the design: "
        "their best points already found the basin"))
    strategy: Literal["bo", "gradient"] | None = D(None, description=(
        "`bo` or `gradient` for any searched method; unset: the method's own (`relora-grid` stays a grid)"))
    groups: Literal["global", "type", "layer", "layer-type"] = D("layer-type", description=(
        "gradient strategy: one (α, β) for all modules, per module type, per layer or per layer × type"))
    gradient_steps: int = D(8, gt=0, description="gradient strategy: Adam steps on training batches "
                                                 "(`training.batch_size` each)")
    gradient_lr: float = D(0.05, gt=0, description="gradient strategy: the coefficients' learning rate (they stay "
                                                   "inside the box)")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> SearchConfig:
        for name in ("alpha_bounds", "beta_bounds"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"{name} must be finite numbers (a GP cannot search an infinite box)")
            if not lo < hi:
                raise ValueError(f"{name} must be (low, high) with low < high")
        return self


RELATIVE_GATE = re.compile(r"\s*old\s*(?:-\s*(\d*\.?\d+)\s*)?")
GATE_HELP = "write a number in (0, 1], or 'old - 0.05' (the old service's own quality minus a margin)"


class Gate(NamedTuple):
    """A readiness gate: a fixed accuracy (a one-sample test), or the old service's own accuracy minus a margin
    (a paired test against the old service on the same gate examples)."""

    absolute: float | None
    margin: float = 0.0


def parse_gate(value: float | str) -> Gate:
    if isinstance(value, str):
        match = RELATIVE_GATE.fullmatch(value)
        if match is None:
            try:
                return parse_gate(float(value))
            except ValueError:
                raise ValueError(f"{value!r} is not a threshold; {GATE_HELP}") from None
        margin = float(match.group(1) or 0.0)
        if margin >= 1:
            raise ValueError(f"margin {margin:g} in {value!r} must be below 1")
        return Gate(None, margin)
    if not 0 < value <= 1:
        raise ValueError(f"{value!r} is outside (0, 1]; {GATE_HELP}")
    return Gate(float(value))


def valid_gate(value: float | str | None) -> float | str | None:
    if value is not None:
        parse_gate(value)
    return value


class GateConfig(_Strict):
    alpha: float = D(0.05, gt=0.0, lt=1.0, description=(
        "the gate's error rate per service: over every look a run takes, the chance of publishing a service whose "
        "true gate-set difference from the old service is below -margin (or whose accuracy is below an absolute "
        "threshold) is at most alpha"))
    looks: int = D(3, gt=0, description=(
        "confirmations planned per run: each checkpoint that passes the screen on D_val is tested once on the gate "
        "set at alpha / looks (Bonferroni); once they are spent the run stops trying. Without `stop_when_ready`, one "
        "look, on the final adapter"))
    chunk: int = D(32, gt=0, description="gate examples scored between two checks of the bound: a look stops as "
                                         "soon as a chunk settles it, either way")
    discordance: float = D(0.2, gt=0.0, le=1.0, description=(
        "the share of gate examples on which old service and candidate are assumed to disagree, for the power check "
        "made before any compute; the record reports the measured share"))
    allow_underpowered: bool = D(False, description=(
        "run even when the gate set cannot certify the margin with 80% power (the record says so)"))
    score_cache: str | None = D(None, description=(
        "where the old service's gate and D_val scores are remembered by content hash (default: the cache "
        "directory); a race shares one across methods"))
    futility: float | None = D(None, ge=0.0, description=(
        "stop a look without publishing as soon as the candidate is shown (at level 0.05) more than this below the "
        "old service: a smaller value gives up sooner on checkpoints that sit just under the old service, where a "
        "look would otherwise read the whole gate set. Unset: more than the margin below. It never publishes "
        "anything, so it costs power, never safety, and the power check simulates it"))
    old_scoring: Literal["as-needed", "upfront"] = D("as-needed", description=(
        "when the old service is scored on the gate set: `as-needed` scores it chunk by chunk as the looks reach "
        "each chunk (a look that settles on 160 examples costs the old service 160, not the whole set); "
        "`upfront` scores the whole set before the first look. The verdicts are the same either way"))


class ReadaptConfig(_Strict):
    old_base: str | None = D(None, description="Θ: the base the old adapter was trained on (HF directory, .gguf "
                                               "or hub id); methods that project the base delta need it")
    new_base: str = D(description="Θ′: the updated base")
    adapter: str | None = D(None, description="the old PEFT LoRA directory")
    train: str = D(description="training JSONL (`text`, `label`)")
    val: str = D(description="validation JSONL: split into the gate set and D_val")
    test: str | None = D(None, description="optional test JSONL, scored once at the end")
    update_probe: str | None = D(None, description=(
        "a text or JSONL (`text`) file of the kind of text the base update was made for: each run records "
        "`retention` = (L_old − L_new)/(L_old − L_PortLLM), 1 keeps the update as PortLLM does, 0 reverts it. "
        "Unset: `retention` is null"))
    out: str = D(description="the output directory, written atomically")
    method: str = D("portllm-ft", description="a registered method (`relora methods`); the default is the fleet "
                                              "race's winner, `DEFAULT_METHOD`")
    threshold: float | str | None = D(None, description=(
        "the gate. `old - 0.05`: publish when a paired test on the gate set shows the new service at most 0.05 "
        "below the old service (old base + old adapter) at error rate `gate.alpha`; a number in (0, 1]: when a "
        "one-sample test shows gate-set accuracy above it. Unset: no gate"))
    stop_when_ready: bool = D(False, description=(
        "stop at the first checkpoint the gate confirms (a screen on D_val, then the test on the gate set), and "
        "skip training when the init already passes; without it, only the final adapter is tested"))
    seed: int = D(0, description="seeds the split, the search, the batches and the LoRA init")
    force: bool = D(False, description="replace an existing `out`")
    portable: bool = D(False, description=(
        "fold rsLoRA's √r into `lora_B` and save `use_rslora: false`, so that engines which scale every adapter by "
        "α/r (SGLang, LoRAX) serve what relora scored; a plain adapter is saved as it is either way"))
    cache_dir: str | None = D(None, description="default: `$RELORA_CACHE` or `~/.cache/relora`")
    device: str = D("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description=(
        "`auto` (CUDA when there is one, then MPS, then the CPU), `cpu`, `cuda`, `cuda:N`, `mps`"))
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = D("auto", description=(
        "the frozen base's weights: `auto` is float32 on the CPU and bfloat16 on a GPU; LoRA parameters and the "
        "optimizer state stay float32"))
    tracking: list[Literal["tensorboard", "mlflow"]] = D([], description=(
        "sinks that get a copy of the run's events when it ends: `tensorboard` (event files in `out/tensorboard/`, "
        "extra `relora[tensorboard]`) and `mlflow` (one run; `MLFLOW_TRACKING_URI` and `MLFLOW_EXPERIMENT_NAME` "
        "apply; extra `relora[mlflow]`). `events.jsonl` stays the record of truth"))
    data: DataConfig = DataConfig()
    training: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()
    gate: GateConfig = GateConfig()
    _threshold = field_validator("threshold")(valid_gate)

    @property
    def parsed_gate(self) -> Gate | None:
        return None if self.threshold is None else parse_gate(self.threshold)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set tree['a']['b'] for 'a.b' (dashes read as underscores)."""
    parts = dotted.replace("-", "_").split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parts[: i + 1])
            raise InputError(None, f"override {dotted}= sets a key inside {where}, which another override set to "
                             f"{node!r}", f"drop {where}={node!r}, or set {where}'s keys one by one")
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
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise InputError(p, f"is not UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})",
                         "save the file as UTF-8") from None
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
