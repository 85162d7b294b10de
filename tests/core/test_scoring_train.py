"""The answer-only evaluator equals the plain full-logits way; accumulation is exact; the anchor holds."""

from __future__ import annotations

import torch

from relora.lab.perf.reference import reference_evaluate
from relora.core.model.adapter import attach_lora, lora_parameters, read_adapter
from relora.core.model.data import TaskFormat, load_task
from relora.core.model.models import load_model, load_tokenizer
from relora.core.model.scoring import evaluate
from relora.core.method.train import Schedule, TrainData, Watch, accumulate_gradients, train


def _setup(world, train_path=None, val_path=None):
    tok = load_tokenizer(world.new_base)
    items, labels = load_task(str(train_path or world.train), str(val_path or world.val), None, tok,
                              TaskFormat(template="{text}\nAnswer:", max_length=64))
    model = attach_lora(load_model(world.new_base), read_adapter(world.adapter), seed=0)
    return model, items, tok.pad_token_id


def test_evaluator_matches_full_logits_single_token(world) -> None:
    model, items, pad = _setup(world)
    ref = reference_evaluate(model, items["val"][:20], pad, batch_size=3)
    res = evaluate(model, items["val"][:20], pad, batch_size=7)
    assert abs(res.loss - ref.loss) < 1e-5 and res.correct == ref.correct


def test_evaluator_matches_full_logits_multi_token_choices(world) -> None:
    model, items, pad = _setup(world, world.mc_train, world.mc_val)
    assert any(len(c) > 1 for it in items["val"] for c in it.candidates)
    ref = reference_evaluate(model, items["val"], pad, batch_size=4)
    res = evaluate(model, items["val"], pad, batch_size=5)
    assert abs(res.loss - ref.loss) < 1e-5 and res.correct == ref.correct


def test_gradient_accumulation_equals_large_batch(world) -> None:
    model, items, pad = _setup(world)
    batch = items["train"][:16]
    grads = []
    for micro in (16, 3):
        model.zero_grad(set_to_none=True)
        loss = accumulate_gradients(model, batch, pad, micro)
        grads.append([p.grad.clone() for p in lora_parameters(model)])
    for full, accumulated in zip(*grads):
        assert torch.allclose(full, accumulated, atol=1e-6, rtol=1e-4)
    assert loss > 0


def test_strong_anchor_keeps_factors_at_init(world) -> None:
    def drift(lam: float) -> float:
        model, items, pad = _setup(world)
        init = [p.detach().clone() for p in lora_parameters(model)]
        sched = Schedule(steps=6, e1=6, lr=2e-2, lr_min=1e-4, lambda1=lam, lambda2=lam, batch_size=8,
                         micro_batch_size=8, eval_every=6)
        train(model, TrainData(train=items["train"], screen=items["val"][:8], pad_id=pad), sched, seed=0,
              clock_start=0.0, watch=Watch(progress=False))
        return sum(float((p - q).norm()) for p, q in zip(lora_parameters(model), init))

    assert drift(1e3) < 0.5 * drift(0.0)


def test_merged_evaluation_restores_every_weight_bit_for_bit(world) -> None:
    """Probes fold LoRA into the base weights for speed; the shared base must come back unchanged."""
    model, items, pad = _setup(world)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    first = evaluate(model, items["val"][:20], pad)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with model.disable_adapter():  # the adapter is live again after evaluation, and it matters
        base_only = evaluate(model, items["val"][:20], pad)
    assert evaluate(model, items["val"][:20], pad).loss == first.loss  # bit for bit: the same weights
    assert abs(first.loss - base_only.loss) > 1e-4


def _padded_cost(batches: list[list[int]], lengths: list[int], overhead: int) -> int:
    return sum(overhead + len(b) * max(lengths[i] for i in b) for b in batches)


def test_length_batches_cover_every_example_once_and_beat_fixed_chunks() -> None:
    import itertools
    import random

    from relora.core.model.scoring import length_sorted_batches

    rng = random.Random(0)
    lengths = [rng.randint(8, 60) for _ in range(32)]
    batches = length_sorted_batches(lengths, max_size=16, overhead=32)
    assert sorted(i for b in batches for i in b) == list(range(32)) and max(map(len, batches)) <= 16
    order = sorted(range(32), key=lengths.__getitem__)
    chunks = [order[:16], order[16:]]
    assert _padded_cost(batches, lengths, 32) < _padded_cost(chunks, lengths, 32)
    small = [5, 9, 9, 20, 21, 40]  # brute force over every contiguous split of the sorted order
    best = min(_padded_cost([list(range(a, b)) for a, b in zip((0, *cuts), (*cuts, 6))], small, 8)
               for k in range(6) for cuts in itertools.combinations(range(1, 6), k))
    assert _padded_cost(length_sorted_batches(small, 6, overhead=8), small, 8) == best


def test_bf16_scoring_judges_the_served_model(world) -> None:
    """On a bfloat16 base with a LoRA delta of 1% of W, evaluate()'s loss equals PEFT's unmerged forward (what
    PEFT and the engines serve) within 5e-5; folding s·B·A into the bf16 weights, as scoring once did, misses
    that tolerance (its rounding drops part of the delta)."""
    from relora.core.model.adapter import lora_modules, set_factors
    from relora.core.math.ops import LowRank

    tok = load_tokenizer(world.new_base)
    items, _ = load_task(str(world.train), str(world.val), None, tok, TaskFormat(template="{text}\nAnswer:", max_length=64))
    old = read_adapter(world.adapter)
    model = attach_lora(load_model(world.new_base, dtype=torch.bfloat16), old, seed=0)
    layers = lora_modules(model)
    scale = {m: 0.01 * float(layers[m].get_base_layer().weight.float().norm()) / float((old.scaling * lr.dense()).norm())
             for m, lr in old.factors.items()}
    set_factors(model, {m: LowRank(B=lr.B * scale[m], A=lr.A) for m, lr in old.factors.items()})
    val, pad = items["val"], tok.pad_token_id
    served = reference_evaluate(model, val, pad, batch_size=8)  # PEFT's own forward, the LoRA branch unmerged
    with model.disable_adapter():
        base_only = reference_evaluate(model, val, pad, batch_size=8)
    assert abs(base_only.loss - served.loss) > 5e-3  # the delta matters
    assert abs(evaluate(model, val, pad).loss - served.loss) < 5e-5
    with torch.no_grad():  # the old folding: W (bf16) += s·B·A, scored with the branch off
        saved = [(layer.get_base_layer().weight, layer.get_base_layer().weight.clone()) for layer in layers.values()]
        for layer in layers.values():
            layer.get_base_layer().weight += layer.get_delta_weight("default").to(torch.bfloat16)
        with model.disable_adapter():
            folded = reference_evaluate(model, val, pad, batch_size=8)
        for weight, original in saved:
            weight.copy_(original)
    assert abs(folded.loss - served.loss) > 5e-5
