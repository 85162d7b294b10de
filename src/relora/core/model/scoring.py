"""Answer-only scoring: the LM head runs only where an answer token is predicted.

On a 49k vocabulary the LM head over every position is most of a forward's
cost, so we run the decoder, gather the hidden states that predict answer
tokens, and project only those. For inference, each LoRA delta is folded into
its base weight (and the weight restored bit for bit afterwards), so a probe
costs one plain forward instead of a forward plus two extra matmuls per module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from relora.core.model.data import ScoringItem
from relora.core.model.device import autocast_for, model_device


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float  # argmax of summed answer log-likelihood
    correct: list[bool]
    accuracy_norm: float | None = None  # argmax of the per-token mean (length-normalized); equal for one-token answers


def causal_parts(model: nn.Module) -> tuple[nn.Module, nn.Module, float | None]:
    """(decoder, lm_head, logit softcap) of a causal LM, PEFT-wrapped or not."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else lm.model
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    return decoder, lm.get_output_embeddings(), softcap


def _batch_tensors(
    seqs: Sequence[tuple[tuple[int, ...], tuple[int, ...]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, mask, and (row, position, target, seq) of each answer token."""
    width = max(len(p) + len(a) - 1 for p, a in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for i, (prompt, answer) in enumerate(seqs):
        # The last answer token is only a target, never an input.
        full = prompt + answer[:-1]
        ids[i, : len(full)] = torch.tensor(full)
        mask[i, : len(full)] = 1
        for j, tok in enumerate(answer):
            rows.append(i)
            cols.append(len(prompt) - 1 + j)
            targets.append(tok)
    return ids, mask, torch.tensor(rows), torch.tensor(cols), torch.tensor(targets)


def answer_logits(
    model: nn.Module, seqs: Sequence[tuple[tuple[int, ...], tuple[int, ...]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at answer positions only: (n_answer_tokens, vocab), targets, row of each."""
    decoder, head, softcap = causal_parts(model)
    device = model_device(model)
    ids, mask, rows, cols, targets = (t.to(device) for t in _batch_tensors(seqs, pad_id))
    with autocast_for(model):
        hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = head(hidden[rows, cols])
    logits = logits.float()  # log-softmax and the loss in float32 whatever the base computes in
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits, targets, rows


def answer_nll(
    model: nn.Module, items: Sequence[ScoringItem], pad_id: int
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the gold answer tokens and their count (for training)."""
    logits, targets, _ = answer_logits(model, [(it.prompt, it.answer) for it in items], pad_id)
    nll = nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return nll, int(targets.numel())


@contextmanager
def lora_merged(model: nn.Module) -> Iterator[None]:
    """Inference with W + s*B@A in place of the LoRA branch; W is restored exactly on exit. Only on float32
    weights: folding s*B@A into bfloat16 or float16 weights rounds a small delta away (about 16% of a delta of
    1% of W), so scoring would judge another model than the one served; there the LoRA branch stays unmerged,
    as PEFT and the serving engines run it."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and not m.merged and not m.disable_adapters]
    if not layers or not hasattr(model, "disable_adapter") or any(
            layer.get_base_layer().weight.dtype != torch.float32 for layer in layers):
        yield
        return
    saved = []
    with torch.no_grad():
        for layer in layers:
            weight = layer.get_base_layer().weight
            saved.append((weight, weight.detach().clone()))
            for name in layer.active_adapters:
                if name in layer.lora_A:
                    weight += layer.get_delta_weight(name).to(weight.dtype)
    try:
        with model.disable_adapter():
            yield
    finally:
        with torch.no_grad():
            for weight, original in saved:
                weight.copy_(original)


# What one forward costs beyond its padded tokens (per-layer kernel launches), in tokens' worth.
BATCH_OVERHEAD_TOKENS = 32


def length_sorted_batches(lengths: list[int], max_size: int, overhead: int = BATCH_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices in contiguous runs of the length-sorted order, at most max_size each, that minimise
    padded tokens plus a per-forward overhead. Fixed-size chunks of a small, spread-out sample
    (a screened probe's 32 prompts of 10-54 tokens) waste almost half their tokens on padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    longest = [lengths[i] for i in order]
    best, cut = [0] + [0] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):  # exact DP: the batch ending at `end` starts at cut[end]
        best[end], cut[end] = min((best[i] + overhead + (end - i) * longest[end - 1], i)
                                  for i in range(max(0, end - max_size), end))
    batches, end = [], len(order)
    while end > 0:
        batches.append(order[cut[end] : end])
        end = cut[end]
    return batches[::-1]


@torch.no_grad()
def evaluate(
    model: nn.Module, items: Sequence[ScoringItem], pad_id: int, batch_size: int = 16
) -> EvalResult:
    """Token-mean validation loss of the gold answers and argmax accuracy over candidates.

    When every candidate is one token, a single forward per example scores all
    of them (the gold sequence's first answer position). Otherwise each
    candidate is scored as its own sequence by summed log-likelihood.
    """
    was_training = model.training
    model.eval()
    single = all(len(c) == 1 for it in items for c in it.candidates)
    nll_total, tokens = 0.0, 0
    correct, correct_norm = [False] * len(items), [False] * len(items)
    lengths = [len(it.prompt) for it in items]
    with lora_merged(model):
        for idx in length_sorted_batches(lengths, batch_size):
            batch = [items[i] for i in idx]
            score = _score_single_token if single else _score_multi_token
            nll, n, hits, hits_norm = score(model, batch, pad_id)
            nll_total += nll
            tokens += n
            for i, hit, hit_norm in zip(idx, hits, hits_norm, strict=True):
                correct[i], correct_norm[i] = hit, hit_norm
    model.train(was_training)
    n_items = max(len(items), 1)
    return EvalResult(loss=nll_total / max(tokens, 1), accuracy=sum(correct) / n_items, correct=correct,
                      accuracy_norm=sum(correct_norm) / n_items)


def _score_single_token(
    model: nn.Module, batch: list[ScoringItem], pad_id: int
) -> tuple[float, int, list[bool], list[bool]]:
    logits, targets, _ = answer_logits(model, [(it.prompt, it.answer) for it in batch], pad_id)
    logp = torch.log_softmax(logits, dim=-1).cpu()
    nll = float(-logp.gather(1, targets.cpu()[:, None]).sum())
    hits = []
    for row, it in enumerate(batch):
        cand = torch.tensor([c[0] for c in it.candidates])
        hits.append(int(logp[row, cand].argmax()) == it.gold)
    return nll, len(batch), hits, hits  # one-token answers: length normalization changes nothing


def _score_multi_token(
    model: nn.Module, batch: list[ScoringItem], pad_id: int
) -> tuple[float, int, list[bool], list[bool]]:
    seqs, owner = [], []
    for i, it in enumerate(batch):
        for k, cand in enumerate(it.candidates):
            seqs.append((it.prompt, cand))
            owner.append((i, k))
    logits, targets, rows = answer_logits(model, seqs, pad_id)
    token_logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1).cpu()
    seq_logp = torch.zeros(len(seqs)).index_add_(0, rows.cpu(), token_logp)
    scores = [[0.0] * len(it.candidates) for it in batch]
    for s, (i, k) in enumerate(owner):
        scores[i][k] = float(seq_logp[s])
    nll = -sum(scores[i][it.gold] for i, it in enumerate(batch))
    n = sum(len(it.answer) for it in batch)
    hits = [max(range(len(sc)), key=sc.__getitem__) == it.gold for sc, it in zip(scores, batch, strict=True)]
    per_token = [[s / len(c) for s, c in zip(sc, it.candidates, strict=True)] for sc, it in zip(scores, batch, strict=True)]
    hits_norm = [max(range(len(sc)), key=sc.__getitem__) == it.gold for sc, it in zip(per_token, batch, strict=True)]
    return nll, n, hits, hits_norm


def negative_flip_rate(old_correct: list[bool], new_correct: list[bool]) -> float:
    """The share of examples the old service got right and the new one gets wrong."""
    flips = sum(o and not n for o, n in zip(old_correct, new_correct, strict=True))
    return flips / len(new_correct)


MIN_DENOMINATOR = 1e-4  # nats: an update that moved the update probe's loss less than this has nothing to retain


@torch.no_grad()
def lm_loss(model: torch.nn.Module, blocks: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy over the blocks (each batch has the same token count)."""
    losses = []
    device = model_device(model)
    for start in range(0, len(blocks), batch_size):
        ids = blocks[start : start + batch_size].to(device)
        with autocast_for(model):
            logits = model(input_ids=ids).logits.float()
        losses.append(torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                        ids[:, 1:].reshape(-1)).item() * len(ids))
    return sum(losses) / len(blocks)


def retention_value(loss_old: float, loss_portllm: float, loss_new: float) -> float | None:
    denominator = loss_old - loss_portllm
    return None if abs(denominator) < MIN_DENOMINATOR else (loss_old - loss_new) / denominator
