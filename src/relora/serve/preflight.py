"""Will a serving engine load this adapter, and will it act? Checked before a rollout publishes.

Each rule names the engine function it mirrors (read in each engine's source). Rules read the adapter
directory as written (adapter_config.json and the safetensors keys), not relora's parsed view, so they
also judge adapters that relora itself would refuse to re-adapt.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from relora.core.model.adapter import EMBEDDING_MODULES, LINEAGE_FILE, adapter_files, module_of, option_set
from relora.core.model.engines import ENGINES, VLLM_DEFAULT_MAX_RANK, VLLM_RANKS, vllm_rank_at_least
from relora.core.model.groups import group_of
from relora.errors import InputError
from relora.io import cache_root


@dataclass(frozen=True)
class Finding:
    engine: str
    refused: bool  # False: loads, with this warning
    rule: str
    problem: str
    fix: str
    source: str  # the engine's function this rule mirrors

    def line(self) -> str:
        return f"({self.rule}) {self.problem}; fix: {self.fix} [{self.source}]"


@dataclass(frozen=True)
class AdapterFiles:
    path: Path
    config: dict[str, Any]
    modules: dict[str, set[str]]  # module name (PEFT prefix removed) -> the parts it has (A, B)
    raw_keys: list[str]

    @property
    def r(self) -> int:
        return int(self.config.get("r", 0))

    @property
    def target_types(self) -> set[str]:
        return {m.rsplit(".", 1)[-1] for m in self.modules}


def read_files(path: str | Path) -> AdapterFiles:
    root = Path(path)
    cfg_path, weights = adapter_files(root)
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        with safe_open(weights, framework="pt") as fh:
            keys = list(fh.keys())
    except Exception as exc:  # noqa: BLE001 - bad JSON or a cut safetensors file: one line either way
        raise InputError(root, f"unreadable adapter ({exc.__class__.__name__})", "restore the adapter") from exc
    if not isinstance(config, dict):
        raise InputError(cfg_path, "is not a JSON object", "restore the adapter's config")
    modules: dict[str, set[str]] = {}
    for key in keys:
        found = module_of(key)
        if found:
            modules.setdefault(found[0], set()).add(found[1])
    return AdapterFiles(root, config, modules, keys)


def vllm_rules(a: AdapterFiles, max_lora_rank: int) -> list[Finding]:
    found, cfg, src = [], a.config, "vllm/lora/peft_helper.py PEFTHelper._validate_features"
    if cfg.get("use_dora"):
        found.append(Finding("vllm", True, "DoRA", "use_dora is true", "merge the DoRA adapter or train plain LoRA", src))
    if option_set(cfg.get("modules_to_save")):
        found.append(Finding("vllm", True, "modules_to_save", f"modules_to_save is {cfg['modules_to_save']}",
                             "train without modules_to_save", src))
    if option_set(cfg.get("bias")):
        found.append(Finding("vllm", True, "bias", f"bias is {cfg['bias']!r}", "train with bias: none", src))
    if a.r > max_lora_rank:
        found.append(Finding("vllm", True, "rank", f"r={a.r} > --max-lora-rank {max_lora_rank}",
                             f"serve with --max-lora-rank {vllm_rank_at_least(a.r)}"
                             " or re-adapt at a lower training.rank", "vllm/lora/peft_helper.py PEFTHelper.validate_legal"))
    if a.r not in VLLM_RANKS:
        above = vllm_rank_at_least(a.r)  # rounding up keeps the capacity
        found.append(Finding("vllm", False, "rank set", f"r={a.r} is not one of vLLM's --max-lora-rank values",
                             f"it loads padded under --max-lora-rank {above}; r={above} is the nearest allowed rank "
                             "above it (training.rank)", "vllm/config/lora.py LoRAConfig.max_lora_rank"))
    return found


def sglang_rules(a: AdapterFiles, max_lora_rank: int | None, target_modules: list[str] | None) -> list[Finding]:
    found, cfg = [], a.config
    if cfg.get("use_dora"):
        found.append(Finding("sglang", True, "DoRA", "use_dora is true", "train plain LoRA",
                             "sglang/srt/lora/lora_manager.py LoRAManager.validate_new_adapter"))
    added = option_set(cfg.get("trainable_token_indices")) or bool(a.target_types & EMBEDDING_MODULES) or any(
        "new_embeddings" in k or "embed_tokens" in k or "lm_head" in k for k in a.raw_keys)
    if added:
        found.append(Finding("sglang", True, "added tokens", "the adapter trains embeddings or added tokens",
                             "train LoRA on linear layers only", "sglang/srt/lora/lora_manager.py validate_new_adapter"))
    if max_lora_rank is not None and a.r > max_lora_rank:
        found.append(Finding("sglang", True, "rank", f"r={a.r} > --max-lora-rank {max_lora_rank}",
                             f"serve with --max-lora-rank {a.r}", "sglang/srt/lora/mem_pool.py LoRAMemoryPool.can_support"))
    if target_modules is not None and not a.target_types <= set(target_modules):
        extra = sorted(a.target_types - set(target_modules))
        found.append(Finding("sglang", True, "target modules", f"{extra} are outside --lora-target-modules",
                             f"serve with --lora-target-modules covering {sorted(a.target_types)}",
                             "sglang/srt/lora/mem_pool.py LoRAMemoryPool.can_support"))
    if cfg.get("use_rslora"):
        found.append(Finding("sglang", True, "rsLoRA", "use_rslora is true, and SGLang scales by alpha/r without an error",
                             "fold sqrt(r) into lora_B and set use_rslora: false (or retrain without rsLoRA)",
                             "sglang/srt/lora/lora.py LoRAAdapter (scaling = lora_alpha / r)"))
    return found


def lorax_rules(a: AdapterFiles) -> list[Finding]:
    found = []
    layers: dict[str, set[str]] = {}
    for module in a.modules:
        layer = group_of(module, "layer")
        if layer != "-":  # a module outside the numbered layers
            layers.setdefault(group_of(module, "type"), set()).add(layer)
    every = set().union(*layers.values()) if layers else set()
    for kind, present in sorted(layers.items()):
        if present != every:
            missing = sorted(every - present, key=int)[:5]
            found.append(Finding("lorax", True, "missing layer", f"{kind} lacks layer(s) {', '.join(missing)}, so LoRAX "
                                 f"drops {kind} in every layer", "give every layer the same target modules",
                                 "lorax server/lorax_server/utils/adapter.py load_module_map"))
    if a.config.get("use_rslora"):
        found.append(Finding("lorax", True, "rsLoRA", "use_rslora is true, and LoRAX's pinned PEFT drops it",
                             "fold sqrt(r) into lora_B and set use_rslora: false",
                             "lorax server/lorax_server/utils/adapter.py load_and_merge_adapters"))
    return found


def peft_rules(a: AdapterFiles) -> list[Finding]:
    """What PEFT itself refuses, and so every engine that loads adapters through it or mirrors it: a rank that
    is not a positive integer, no target modules, a config LoraConfig does not accept."""
    problems = []
    r = a.config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        problems.append((f"r is {r!r}, not a positive integer", "peft/tuners/lora/layer.py LoraLayer.update_layer"))
    if not a.config.get("target_modules") and not a.config.get("target_parameters"):
        problems.append(("target_modules is empty", "peft/tuners/tuners_utils.py BaseTuner.inject_adapter"))
    if not problems:
        from peft import LoraConfig

        known = set(LoraConfig.__dataclass_fields__)
        try:
            LoraConfig(**{k: v for k, v in a.config.items() if k in known})
        except (TypeError, ValueError) as exc:
            problems.append((f"PEFT's LoraConfig refuses it ({str(exc).splitlines()[0][:120]})",
                             "peft/tuners/lora/config.py LoraConfig.__post_init__"))
    return [Finding(e, True, "peft", problem, "save the adapter with PEFT (a positive r, the modules it adapts)",
                    source) for problem, source in problems for e in ENGINES]


def base_rules(a: AdapterFiles, base_modules: set[str], base_arch: list[str] | None) -> list[Finding]:
    """Keys against the base's modules: a key whose full name is no module of the base is a silent no-op in
    vLLM (it matches only the name's last part), and LoRAX warns on it."""
    found = []
    strays = sorted(m for m in a.modules if m not in base_modules)
    if strays:
        for engine, refused, source in (("vllm", True, "vllm/lora/lora_model.py LoRAModel.check_unexpected_modules"),
                                        ("lorax", False, "lorax server/lorax_server/utils/adapter.py")):
            found.append(Finding(engine, refused, "key prefix", f"{len(strays)} LoRA module(s) match no module of the "
                                 f"base, e.g. {strays[0]} (it would load and do nothing)",
                                 "save the adapter with PEFT against this base", source))
    adapter_arch = a.config.get("base_model_architectures")
    if base_arch and adapter_arch and adapter_arch != base_arch:
        found.append(Finding("lorax", True, "architecture", f"adapter for {adapter_arch}, base is {base_arch}",
                             "serve it on its own base", "lorax server/lorax_server/utils/adapter.py"))
    return found


def lineage_rules(a: AdapterFiles, base: Path, cache: Path) -> list[Finding]:
    """An adapter relora wrote names the base it was re-adapted for by content hash (no engine reads
    base_model_name_or_path): served on another base, it loads and computes something else."""
    from relora.core.model.weights import model_files
    from relora.io import content_hash

    lineage_path = a.path / LINEAGE_FILE
    if not lineage_path.is_file():
        return []
    try:
        wanted = json.loads(lineage_path.read_text(encoding="utf-8"))["new_base"]
        name, sha = str(wanted["name"]), str(wanted["sha256"])
    except (ValueError, KeyError, TypeError):
        return []  # not relora's sidecar: nothing to compare
    served = content_hash(model_files(base), cache)
    if served == sha:
        return []
    return [Finding(e, False, "base mismatch", f"re-adapted for {name} (sha256 {sha[:12]}), this base is "
                    f"{served[:12]}", "serve it on the base it was re-adapted for, or re-adapt it to this one",
                    f"{LINEAGE_FILE} (no engine checks the base)") for e in ENGINES]


@dataclass(frozen=True, kw_only=True)
class EngineLimits:
    """The engines' launch settings the rules check against: vLLM's --max-lora-rank, SGLang's --max-lora-rank
    and --lora-target-modules (None: SGLang infers them from the adapters it loads)."""
    max_lora_rank: int = VLLM_DEFAULT_MAX_RANK
    sglang_max_rank: int | None = None
    sglang_targets: list[str] | None = None


def check(adapter: str | Path, engines: tuple[str, ...] = ENGINES, base: Path | None = None,
          limits: EngineLimits = EngineLimits(), cache: Path | None = None) -> dict[str, list[Finding]]:
    """Findings per asked engine (empty: it loads the adapter as it is)."""
    max_lora_rank, sglang_max_rank, sglang_targets = limits.max_lora_rank, limits.sglang_max_rank, limits.sglang_targets
    a = read_files(adapter)
    refused_by_peft = peft_rules(a)
    if refused_by_peft:  # the engines' own rules assume an adapter PEFT can build
        return {e: [f for f in refused_by_peft if f.engine == e] for e in engines}
    findings = vllm_rules(a, max_lora_rank) + sglang_rules(a, sglang_max_rank, sglang_targets) + lorax_rules(a)
    if base is not None:
        from relora.core.model.weights import WeightReader

        reader = WeightReader(base)
        findings += base_rules(a, set(reader.module_names()), reader.config.get("architectures"))
        findings += lineage_rules(a, base, cache if cache is not None else cache_root(None))
        if not acts(adapter, base):
            findings += [Finding(e, True, "acts", "loaded with PEFT on the base, it leaves every logit unchanged",
                                 "check the adapter's weights (lora_B all zero?) and its base", "peft PeftModel")
                         for e in ENGINES]
    return {e: [f for f in findings if f.engine == e] for e in engines}


def acts(adapter: str | Path, base: Path, prompts: int = 3) -> bool:
    """Whether the adapter, loaded by PEFT itself on the base, changes the logits of a few prompts."""
    import torch
    from peft import PeftModel

    from relora.core.model.models import shared_model

    # the process's shared base (a fleet worker has it loaded already), left clean for the next job
    model = PeftModel.from_pretrained(shared_model(base), str(adapter)).eval()
    try:
        vocab = int(model.config.vocab_size)
        ids = torch.randint(0, vocab, (prompts, 12), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            with_lora = model(input_ids=ids).logits
            with model.disable_adapter():
                without = model(input_ids=ids).logits
    finally:
        model.unload()
    return not math.isclose(float((with_lora - without).abs().max()), 0.0, abs_tol=1e-7)


def verdict_line(engine: str, findings: list[Finding]) -> str:
    refused = [f for f in findings if f.refused]
    if refused:
        return f"{engine}: refused " + "; ".join(f.line() for f in refused)
    if findings:
        return f"{engine}: loads, with warnings " + "; ".join(f.line() for f in findings)
    return f"{engine}: loads"
