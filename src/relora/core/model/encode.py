"""Prompt and answer tokens that hold for any tokenizer (SentencePiece `▁`, byte-level BPE, word-level).

An answer's tokens are those of tokenize(prompt + answer) past the prompt boundary: the tokens the
model sees in context, not those of the answer tokenized on its own (which gives a stray `▁` or other
merges with SentencePiece). Fast tokenizers split at the character boundary by their offsets; slow
ones at the common prefix with tokenize(prompt). Truncation keeps the leading special tokens (BOS).
"""

from __future__ import annotations

from typing import Any

Ids = tuple[int, ...]


def _encodings(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]] | None, list[int]]]:
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(texts, add_special_tokens=True, return_offsets_mapping=fast, return_special_tokens_mask=True)
    offsets = enc["offset_mapping"] if fast else [None] * len(texts)
    return list(zip(enc["input_ids"], offsets, enc["special_tokens_mask"], strict=True))


def _split(ids: list[int], offsets: list[tuple[int, int]] | None, special: list[int], boundary: int,
           prompt_ids: list[int]) -> tuple[Ids, Ids]:
    """(prompt part, answer part) of one full encoding; trailing special tokens (EOS) belong to neither."""
    end = len(ids)
    while end > 0 and special[end - 1]:
        end -= 1
    if offsets is not None:  # the first non-special token that reaches past the boundary starts the answer
        k = next((i for i in range(end) if not special[i] and offsets[i][1] > boundary), end)
    else:
        k = 0
        while k < min(end, len(prompt_ids)) and ids[k] == prompt_ids[k]:
            k += 1
    return tuple(ids[:k]), tuple(ids[k:end])


def encode_example(tokenizer: Any, prompt_text: str, options: list[str], max_length: int) -> tuple[Ids, tuple[Ids, ...]]:
    """The prompt's ids and each option's answer ids (as " " + option after the prompt).

    When options tokenize the boundary differently, the prompt is the common prefix of all their
    prompt parts and each answer carries the rest, so every candidate is scored in its own context."""
    texts = [prompt_text + " " + option for option in options]
    encoded = _encodings(tokenizer, texts)
    prompt_ids: list[int] = []
    if not getattr(tokenizer, "is_fast", False):
        prompt_ids = list(tokenizer(prompt_text, add_special_tokens=True)["input_ids"])
    parts = [_split(ids, off, sp, len(prompt_text), prompt_ids) for ids, off, sp in encoded]
    prompt = _common_prefix([p for p, _ in parts])
    answers = tuple(p[len(prompt):] + a for p, a in parts)
    if any(not a for a in answers):
        raise ValueError(f"an option of {options!r} has no answer tokens")
    lead = _leading_specials(encoded[0][2], len(prompt))
    return truncate(prompt, lead, max_length), answers


def _common_prefix(seqs: list[Ids]) -> Ids:
    first = seqs[0]
    n = len(first)
    for s in seqs[1:]:
        n = min(n, len(s))
        n = next((i for i in range(n) if s[i] != first[i]), n)
    return first[:n]


def _leading_specials(special: list[int], limit: int) -> int:
    n = 0
    while n < limit and special[n]:
        n += 1
    return n


def truncate(prompt: Ids, lead: int, max_length: int) -> Ids:
    """At most max_length tokens: the leading special tokens (BOS) stay, the start of the text goes
    (the end holds the question cue)."""
    if len(prompt) <= max_length:
        return prompt
    keep = max(max_length - lead, 1)
    return prompt[:lead] + prompt[-keep:]
