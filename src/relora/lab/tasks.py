"""Service tasks built deterministically from WordNet 3.0, shaped like the paper's.

- wn-topic (like 20News): a noun's gloss -> its lexicographer file (noun.animal -> "animal"),
  8 classes, seeded splits balanced per category;
- wn-relation (like NLI): a noun pair -> entailment (hypernym), contradiction (co-hyponym)
  or neutral (unrelated);
- wn-define (like MMLU): a definition -> which of 4 words it defines (multiple choice).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relora.errors import InputError
from relora.io import atomic_dir

# WordNet 3.0 lexicographer file numbers (lexnames(5WN)) for the noun files.
NOUN_LEXNAMES = {
    3: "Tops", 4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body", 9: "cognition",
    10: "communication", 11: "event", 12: "feeling", 13: "food", 14: "group", 15: "location", 16: "motive",
    17: "object", 18: "person", 19: "phenomenon", 20: "plant", 21: "possession", 22: "process",
    23: "quantity", 24: "relation", 25: "shape", 26: "state", 27: "substance", 28: "time",
}
WN_TOPIC_LABELS = ("animal", "artifact", "body", "food", "location", "person", "plant", "substance")


def noun_glosses(wordnet: Path) -> dict[str, list[tuple[str, str]]]:
    """category -> [(lemma, definition)] for the noun lexicographer files, in file order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for s in noun_synsets(wordnet).values():
        if s.category != "other" and len(s.definition) > 12:
            out.setdefault(s.category, []).append((s.lemma, s.definition))
    return out


def split_paths(out_dir: Path) -> dict[str, Path]:
    return {s: out_dir / f"{s}.jsonl" for s in ("train", "val", "test")}


def built(out_dir: Path) -> bool:
    """Splits are written all at once (a rename), so any complete set is final."""
    return all(p.is_file() for p in split_paths(out_dir).values())


@dataclass(frozen=True)
class Synset:
    lemma: str
    category: str
    definition: str
    hypernyms: tuple[str, ...]  # offsets


def noun_synsets(wordnet: Path) -> dict[str, Synset]:
    """offset -> Synset, with hypernym pointers ('@' and instance '@i'); the definition is cut
    before the examples, which quote the word itself."""
    path = wordnet / "data.noun"
    if not path.is_file():
        raise InputError(wordnet, "no data.noun", "pass a WordNet 3.0 dict directory")
    synsets = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  ") or " | " not in line:
                continue
            fields, gloss = line.split(" | ", 1)
            parts = fields.split()
            n_words = int(parts[3], 16)
            ptr_at = 4 + 2 * n_words
            n_ptrs = int(parts[ptr_at])
            ptrs = [parts[ptr_at + 1 + 4 * i : ptr_at + 5 + 4 * i] for i in range(n_ptrs)]
            hyper = tuple(p[1] for p in ptrs if p[0] in ("@", "@i") and p[2] == "n")
            definition = gloss.split(";")[0].split('"')[0].strip()
            synsets[parts[0]] = Synset(parts[4].replace("_", " "), NOUN_LEXNAMES.get(int(parts[1]), "other"),
                                       definition, hyper)
    return synsets


def build_wn_relation(wordnet: Path, out_dir: Path, seed: int = 0, train: int = 1500, val: int = 512,
                      test: int = 512) -> dict[str, Path]:
    """NLI-shaped pairs: hyponym -> hypernym is entailment, co-hyponyms contradict, random pairs are neutral."""
    if built(out_dir):
        return split_paths(out_dir)
    syn = noun_synsets(wordnet)
    rng = random.Random(seed)
    children: dict[str, list[str]] = {}
    for off, s in sorted(syn.items()):
        for h in s.hypernyms:
            children.setdefault(h, []).append(off)
    parents = sorted(h for h, c in children.items() if len(c) >= 2 and h in syn)
    offsets = sorted(syn)
    rows, n = [], (train + val + test) // 3 + 1
    for _ in range(n):
        h = rng.choice(parents)
        a, b = rng.sample(children[h], 2)
        x, y = rng.sample(offsets, 2)
        rows += [_pair(syn[a].lemma, syn[h].lemma, "entailment"), _pair(syn[a].lemma, syn[b].lemma, "contradiction"),
                 _pair(syn[x].lemma, syn[y].lemma, "neutral")]
    return _split_and_write(rows, rng, train, val, test, out_dir)


def _pair(premise: str, hypothesis: str, label: str) -> dict[str, str]:
    return {"text": f"Premise: this is a {premise}.\nHypothesis: this is a {hypothesis}.", "label": label}


def build_wn_define(wordnet: Path, out_dir: Path, seed: int = 0, train: int = 1500, val: int = 512,
                    test: int = 512) -> dict[str, Path]:
    """4-way multiple choice, like MMLU: which word has this definition?"""
    if built(out_dir):
        return split_paths(out_dir)
    syn = noun_synsets(wordnet)
    rng = random.Random(seed)
    pool = sorted({(s.lemma, s.definition) for s in syn.values() if len(s.definition) > 12})
    lemmas = sorted({lemma for lemma, _ in pool})
    rows = []
    for lemma, definition in rng.sample(pool, train + val + test):
        distractors = rng.sample([w for w in rng.sample(lemmas, 8) if w != lemma], 3)
        choices = [lemma, *distractors]
        rng.shuffle(choices)
        rows.append({"text": f"Which word is defined as: {definition}?", "label": lemma, "choices": choices})
    return _split_and_write(rows, rng, train, val, test, out_dir)


def _split_and_write(rows: list[dict[str, Any]], rng: random.Random, train: int, val: int, test: int,
                     out_dir: Path) -> dict[str, Path]:
    rng.shuffle(rows)
    splits = {"val": rows[:val], "test": rows[val : val + test], "train": rows[val + test : val + test + train]}
    _write_splits(out_dir, splits)
    return split_paths(out_dir)


def build_wn_topic(wordnet: Path, out_dir: Path, seed: int = 0, per_label_train: int = 200, val: int = 512,
                   test: int = 512) -> dict[str, Path]:
    """Write train/val/test JSONL over WN_TOPIC_LABELS (balanced, seeded); returns the split paths. Cached by
    content."""
    labels = WN_TOPIC_LABELS
    if built(out_dir):
        return split_paths(out_dir)
    glosses = noun_glosses(wordnet)
    rng = random.Random(seed)
    per_label_eval = (val + test) // len(labels) + 1
    splits: dict[str, list[dict[str, str]]] = {"train": [], "val": [], "test": []}
    for label in labels:
        pool = sorted(glosses.get(label, []))
        if len(pool) < per_label_train + per_label_eval:
            raise InputError(wordnet, f"too few {label} glosses ({len(pool)})", "use a full WordNet 3.0")
        rng.shuffle(pool)
        rows = [{"text": f"Topic of: {d}", "label": label} for _, d in pool]
        splits["train"] += rows[:per_label_train]
        held = rows[per_label_train : per_label_train + per_label_eval]
        splits["val"] += held[: len(held) // 2]
        splits["test"] += held[len(held) // 2 :]
    for name, size in (("val", val), ("test", test)):
        rng.shuffle(splits[name])
        splits[name] = splits[name][:size]
    rng.shuffle(splits["train"])
    _write_splits(out_dir, splits)
    return split_paths(out_dir)


def _write_splits(out_dir: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    # Replaces only an incomplete leftover: a complete set of splits returned early
    with atomic_dir(out_dir, replace=True) as tmp:
        for name, rows in splits.items():
            with (tmp / f"{name}.jsonl").open("w") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)


BINARY_SIZES = {"train": 400, "val": 128, "test": 128}


def build_wn_binary(wordnet: Path, out_dir: Path, category: str, seed: int = 0,
                    sizes: dict[str, int] = BINARY_SIZES) -> dict[str, Path]:
    """One fleet service: "is this gloss about <category>?" (yes/no, balanced); sizes: train, val and test."""
    train, val, test = sizes["train"], sizes["val"], sizes["test"]
    if built(out_dir):
        return split_paths(out_dir)
    glosses = noun_glosses(wordnet)
    rng = random.Random(f"{seed}-{category}")
    half = (train + val + test) // 2 + 1
    positives = rng.sample(sorted(d for _, d in glosses[category]), half)
    others = sorted(d for c, rows in glosses.items() if c != category for _, d in rows)
    negatives = rng.sample(others, half)
    rows = [{"text": f"{d}\nIs this about a {category}?", "label": label}
            for batch, label in ((positives, "yes"), (negatives, "no")) for d in batch]
    return _split_and_write(rows, rng, train, val, test, out_dir)


TASKS = {"wn-topic": build_wn_topic, "wn-relation": build_wn_relation, "wn-define": build_wn_define}


def grow_splits(original: dict[str, Path], supplement: dict[str, Path], out_dir: Path, *, val: int,
                test: int) -> dict[str, Path]:
    """The original splits with validation and test grown to `val` and `test` examples by adding rows of a
    supplement (another seed's draw), never by reshuffling: train and the first rows of val and test stay as they
    were, so old adapters trained on them stay valid. An added row's text is in no split already."""
    if built(out_dir):
        return split_paths(out_dir)
    rows = {name: [json.loads(line) for line in original[name].read_text().splitlines() if line.strip()]
            for name in ("train", "val", "test")}
    seen = {r["text"] for split in rows.values() for r in split}
    extra = []
    for name in ("val", "test", "train"):
        for line in supplement[name].read_text().splitlines():
            row = json.loads(line) if line.strip() else None
            if row is not None and row["text"] not in seen:
                seen.add(row["text"])
                extra.append(row)
    need = max(val - len(rows["val"]), 0) + max(test - len(rows["test"]), 0)
    if len(extra) < need:
        raise InputError(supplement["val"], f"has {len(extra)} new examples, {need} are needed",
                         "ask for smaller validation and test splits")
    grow_val = max(val - len(rows["val"]), 0)
    rows["val"] += extra[:grow_val]
    rows["test"] += extra[grow_val:need]
    _write_splits(out_dir, rows)
    return split_paths(out_dir)
