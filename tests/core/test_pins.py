"""Tests that pin the math the mutation check (scripts/mutants.sh) breaks: the gradient strategy's
hooks, LoRA scaling as PEFT's own layers apply it, and the anchor against no anchor from one init."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from helpers import fast_config
from relora.core.model.adapter import attach_lora, lora_modules, read_adapter
from relora.core.model.config import ReadaptConfig
from relora.core.math.ops import LowRank, lora_scaling
from relora.core.run.readapt import readapt
from relora.core.method.search.gradient import FusionTerms, fused_branches, group_of


def _random_factors(modules: list[str], model: torch.nn.Module, r: int, seed: int) -> dict[str, LowRank]:
    gen = torch.Generator().manual_seed(seed)
    weights = dict(model.named_parameters())
    out = {}
    for m in modules:
        w = weights[f"{m}.weight"]
        out[m] = LowRank(B=torch.randn(w.shape[0], r, generator=gen) * 0.3, A=torch.randn(r, w.shape[1], generator=gen) * 0.3)
    return out


def test_the_gradient_hooks_compute_an_exact_rank_2r_lora(world) -> None:
    """The hooked model's logits equal those of the base with alpha_g * Pi_r(dW) + beta_g * s * B A added to
    each weight: a wrong sign on either term or a dropped scaling of the old adapter moves them."""
    old = read_adapter(world.adapter)
    base = AutoModelForCausalLM.from_pretrained(str(world.new_base), torch_dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(str(world.new_base), torch_dtype=torch.float32)
    delta = _random_factors(old.modules, base, old.r, seed=1)
    groups = {m: group_of(m, "layer-type") for m in old.modules}
    gen = torch.Generator().manual_seed(2)
    values = {g: (float(torch.rand(1, generator=gen)) * 2 - 1.5, float(torch.rand(1, generator=gen)) + 0.5)
              for g in set(groups.values())}
    with torch.no_grad():
        params = dict(reference.named_parameters())
        for m, g in groups.items():
            a, b = values[g]
            params[f"{m}.weight"] += a * delta[m].dense() + b * old.scaling * old.factors[m].dense()
    model = attach_lora(base, old, seed=0)
    coeffs = {g: torch.tensor(v) for g, v in values.items()}
    ids = torch.randint(4, 40, (2, 9), generator=gen)
    with torch.no_grad(), fused_branches(model, lora_modules(model), FusionTerms(delta, old.factors, old.scaling),
                                         groups, coeffs):
        hooked = model(input_ids=ids).logits
    with torch.no_grad():
        exact = reference(input_ids=ids).logits
    assert old.scaling != 1.0  # else dropping it would not show
    assert torch.allclose(hooked, exact, atol=1e-4), float((hooked - exact).abs().max())


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_scaling_is_what_peft_layers_apply(rslora: bool) -> None:
    """relora's scaling of B A equals the scaling PEFT's own LoRA layer holds, plain and rsLoRA."""
    from peft import LoraConfig, get_peft_model

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(32, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    for r, alpha in ((16, 32), (8, 8), (4, 24)):
        peft_model = get_peft_model(Tiny(), LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, target_modules=["proj"]))
        layer = peft_model.base_model.model.proj
        assert lora_scaling(alpha, r, rslora) == pytest.approx(layer.scaling["default"], rel=1e-12), (r, alpha)


def test_the_anchor_holds_relora_near_its_init_against_the_same_method_without_it(world, tmp_path: Path) -> None:
    """relora with a strong anchor against relora with lambda = 0, both from the same searched init (one
    cache, so one search): the anchored factors move less than half as far."""
    cache = str(tmp_path / "cache")

    def run(out: str, **training: float) -> Path:
        cfg = fast_config(world, tmp_path / out, "relora", cache_dir=cache)
        cfg["training"] = cfg["training"] | training
        readapt(ReadaptConfig(**cfg), progress=False)
        return tmp_path / out / "adapter_model.safetensors"

    init = load_file(run("init", steps=0))
    anchored, free = run("anchored", lambda1=50.0, lambda2=50.0), run("free", lambda1=0.0, lambda2=0.0)

    def moved(path: Path) -> float:
        final = load_file(path)
        return sum(float((final[k] - init[k]).pow(2).sum()) for k in init) ** 0.5

    assert moved(free) > 0.0
    assert moved(anchored) < 0.5 * moved(free)
