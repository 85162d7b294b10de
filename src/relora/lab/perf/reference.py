"""The plain way: full logits at every position, then the answer positions picked out.

`relora lab perf` times the evaluator against it, and the tests check the evaluator
against it to 1e-5; it shares no code with relora.core.model.scoring on purpose.
"""

from __future__ import annotations

import torch

from relora.core.model.data import ScoringItem
from relora.core.model.scoring import EvalResult


def _padded(seqs: list[tuple[int, ...]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    return ids, mask


@torch.no_grad()
def reference_evaluate(model: torch.nn.Module, items: list[ScoringItem], pad_id: int, batch_size: int = 16) -> EvalResult:
    """Summed log-likelihood of each candidate from the full logits, in fixed batches of sequences.

    When every candidate is one token, one sequence per example (prompt + gold answer) is enough:
    all candidates are read at the answer position. Otherwise each candidate is its own sequence."""
    single = all(len(c) == 1 for it in items for c in it.candidates)
    jobs = [(i, k) for i, it in enumerate(items) for k in ([it.gold] if single else range(len(it.candidates)))]
    scores = [[0.0] * len(it.candidates) for it in items]
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        seqs = [items[i].prompt + items[i].candidates[k][:-1] for i, k in chunk]
        ids, mask = _padded(seqs, pad_id)
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for row, (i, k) in enumerate(chunk):
            pos = len(items[i].prompt) - 1
            if single:
                for c, cand in enumerate(items[i].candidates):
                    scores[i][c] = float(logp[row, pos, cand[0]])
            else:
                scores[i][k] = float(sum(logp[row, pos + j, t] for j, t in enumerate(items[i].candidates[k])))
    nll = -sum(sc[it.gold] for sc, it in zip(scores, items, strict=True))
    tokens = sum(len(it.answer) for it in items)
    correct = [max(range(len(sc)), key=sc.__getitem__) == it.gold for sc, it in zip(scores, items, strict=True)]
    per_token = [[s / len(c) for s, c in zip(sc, it.candidates, strict=True)] for sc, it in zip(scores, items, strict=True)]
    norm = [max(range(len(sc)), key=sc.__getitem__) == it.gold for sc, it in zip(per_token, items, strict=True)]
    return EvalResult(loss=nll / tokens, accuracy=sum(correct) / len(items), correct=correct,
                      accuracy_norm=sum(norm) / len(items))
