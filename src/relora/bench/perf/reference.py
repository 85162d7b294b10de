"""The plain way each stage is measured against, and the reference the tests check the evaluator with:
full logits at every position, then the answer positions picked out."""

from __future__ import annotations

import torch

from relora.core.data import ScoringItem


@torch.no_grad()
def plain_evaluate(model: torch.nn.Module, items: list[ScoringItem], pad_id: int, batch_size: int) -> tuple[float, float]:
    """The plain way: full logits over every position, then pick the answer positions."""
    nll, tokens, hits = 0.0, 0, 0
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        seqs = [it.prompt + it.answer[:-1] for it in batch]
        width = max(map(len, seqs))
        ids = torch.full((len(batch), width), pad_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for i, it in enumerate(batch):
            pos = len(it.prompt) - 1
            nll -= float(sum(logp[i, pos + j, t] for j, t in enumerate(it.answer)))
            tokens += len(it.answer)
            cand = torch.tensor([c[0] for c in it.candidates])
            hits += int(logp[i, pos, cand].argmax()) == it.gold
    return nll / tokens, hits / len(items)
