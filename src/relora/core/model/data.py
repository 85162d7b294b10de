"""Task data: JSONL examples -> validated, tokenized scoring items.

Each line is {"text": ..., "label": ...} with an optional "choices" list that
makes the example multiple choice. Answers are verbalised as " " + label.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from relora.core.model.encode import encode_example
from relora.errors import InputError
from relora.io import check_regular_file


T = TypeVar("T")


class Tokenizer(Protocol):
    def __call__(self, text: str, add_special_tokens: bool = ...) -> Any: ...


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ScoringItem:
    """One example, tokenized: prompt ids and one id list per candidate answer."""

    prompt: tuple[int, ...]
    candidates: tuple[tuple[int, ...], ...]
    gold: int

    @property
    def answer(self) -> tuple[int, ...]:
        return self.candidates[self.gold]


def tokens_in(batch: list[ScoringItem]) -> int:
    """The tokens a training batch puts through forward and backward: each example's prompt and gold answer."""
    return sum(len(it.prompt) + len(it.answer) for it in batch)


def read_jsonl(path: str | Path) -> list[Example]:
    p = check_regular_file(path, "data file", "pass a JSONL file")
    examples: list[Example] = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(p, f"line {line} is not UTF-8 (byte {exc.object[exc.start]:#04x})",
                         "save the file as UTF-8") from exc
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            examples.append(_parse_line(p, lineno, line))
    if not examples:
        raise InputError(p, "no examples", 'write one {"text": ..., "label": ...} object per line')
    return examples


def _parse_line(path: Path, lineno: int, line: str) -> Example:
    fix = 'write one {"text": str, "label": str, "choices"?: [str]} object per line'
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"line {lineno} is not valid JSON ({exc.msg})", fix) from exc
    except RecursionError:
        raise InputError(path, f"line {lineno} nests too deeply to read", fix) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or "label" not in obj:
        raise InputError(path, f"line {lineno} lacks a string 'text' and a 'label'", fix)
    for key in ("text", "label"):
        if isinstance(obj[key], str) and not obj[key].isascii():
            try:
                obj[key].encode("utf-8")
            except UnicodeEncodeError as exc:  # a \ud800-style escape of half a surrogate pair
                raise InputError(path, f"line {lineno}: {key} holds a lone surrogate "
                                 f"(\\u{ord(exc.object[exc.start]):04x}), which no tokenizer can encode",
                                 "write the character itself, or a full surrogate pair") from None
    if not isinstance(obj["label"], str):
        raise InputError(path, f"line {lineno}: label is {json.dumps(obj['label'])}, not a string",
                         'give every example its label as text, e.g. "label": "positive"')
    if not obj["label"].strip():
        raise InputError(path, f"line {lineno} has an empty label", "give every example a non-empty label")
    choices = obj.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or len(choices) < 2:
            raise InputError(path, f"line {lineno}: 'choices' must list at least 2 answers", fix)
        choices = tuple(str(c) for c in choices)
        if str(obj["label"]) not in choices:
            raise InputError(path, f"line {lineno}: label {obj['label']!r} is not among its choices", fix)
    return Example(text=obj["text"], label=str(obj["label"]), choices=choices)


def text_overlap(train: list[Example], val: list[Example]) -> int:
    """How many validation examples have a text that the training file also has (a leak the gate cannot see)."""
    texts = {ex.text for ex in train}
    return sum(ex.text in texts for ex in val)


def label_set(train: list[Example], given: list[str] | None) -> list[str]:
    """The classification label set: --labels, else sorted distinct train labels."""
    labels = list(given) if given else sorted({ex.label for ex in train if ex.choices is None})
    if any(ex.choices is None for ex in train) and len(labels) < 2:
        raise InputError("data.labels" if given else None, f"the task has {len(labels)} label ({', '.join(labels)}): "
                         "with one, every answer is right by construction and any gate is met at step 0",
                         "give the task at least two labels (or data.labels=[...] with the full set)")
    return labels


def check_labels(path: str | Path, examples: list[Example], labels: list[str]) -> None:
    allowed = set(labels)
    for i, ex in enumerate(examples, 1):
        if ex.choices is None and ex.label not in allowed:
            raise InputError(
                path,
                f"example {i} has label {ex.label!r} outside the label set {sorted(allowed)}",
                "fix the label or pass the full set with data.labels=[...]",
            )


def sample(examples: list[T], n: int, seed: int) -> list[T]:
    """A seeded subset of at most n examples (D_val for the search)."""
    if len(examples) <= n:
        return list(examples)
    rng = random.Random(seed)
    return rng.sample(examples, n)


def tokenize(
    examples: list[Example],
    labels: list[str],
    tokenizer: Tokenizer,
    template: str,
    max_length: int,
) -> list[ScoringItem]:
    """Each example's prompt and candidate answers, tokenized in context (relora.core.model.encode)."""
    items = []
    for ex in examples:
        options = list(ex.choices) if ex.choices is not None else labels
        prompt, candidates = encode_example(tokenizer, template.format(text=ex.text), options, max_length)
        items.append(ScoringItem(prompt=prompt, candidates=candidates, gold=options.index(ex.label)))
    return items


def checked_labels(paths: dict[str, str], labels_given: list[str] | None) -> tuple[dict[str, list[Example]], list[str]]:
    """Read the splits and the label set, and check every example's label against it."""
    raw = {split: read_jsonl(p) for split, p in paths.items()}
    labels = label_set(raw["train"], labels_given)
    for split, examples in raw.items():
        check_labels(paths[split], examples, labels)
    return raw, labels


@dataclass(frozen=True)
class Task:
    items: dict[str, list[ScoringItem]]  # per split, tokenized
    labels: list[str]
    val_in_train: int  # validation examples whose text the training file also has


@dataclass(frozen=True, kw_only=True)
class TaskFormat:
    """How a task's examples become prompts: the template, the label set (None: the training file's), and
    the longest prompt kept."""
    template: str
    max_length: int
    labels: list[str] | None = None


def read_task(train_path: str, val_path: str, test_path: str | None, tokenizer: Tokenizer, fmt: TaskFormat) -> Task:
    """Read each split once, validate it and tokenize it."""
    template, labels_given, max_length = fmt.template, fmt.labels, fmt.max_length
    paths = {"train": train_path, "val": val_path}
    if test_path:
        paths["test"] = test_path
    raw, labels = checked_labels(paths, labels_given)
    items = {s: tokenize(ex, labels, tokenizer, template, max_length) for s, ex in raw.items()}
    check_distinct_answers(paths, raw, labels, items)
    return Task(items, labels, text_overlap(raw["train"], raw["val"]))


def load_task(train_path: str, val_path: str, test_path: str | None, tokenizer: Tokenizer,
              fmt: TaskFormat) -> tuple[dict[str, list[ScoringItem]], list[str]]:
    """read_task's items per split and labels."""
    task = read_task(train_path, val_path, test_path, tokenizer, fmt)
    return task.items, task.labels


def check_distinct_answers(paths: dict[str, str], raw: dict[str, list[Example]], labels: list[str],
                           items: dict[str, list[ScoringItem]]) -> None:
    """Two candidates whose answer tokens are the same can never be told apart (e.g. both become <unk>)."""
    for split, split_items in items.items():
        for lineno, (ex, item) in enumerate(zip(raw[split], split_items, strict=True), 1):
            options = list(ex.choices) if ex.choices is not None else labels
            seen: dict[tuple[int, ...], str] = {}
            for option, ids in zip(options, item.candidates, strict=True):
                if ids in seen:
                    where = "the label set" if ex.choices is None else f"example {lineno}'s choices"
                    raise InputError(paths[split], f"{where}: {seen[ids]!r} and {option!r} tokenize to the same "
                                     f"answer tokens {list(ids)}", "rename one of them (the tokenizer cannot tell them apart)")
                seen[ids] = option
