"""Service tasks built deterministically from WordNet 3.0 (like 20News: gloss -> topic).

wn-topic: a noun's gloss, labelled by its lexicographer file (noun.animal ->
"animal"). Splits are seeded and balanced per category.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

from relora.errors import InputError

# WordNet 3.0 lexicographer file numbers (lexnames(5WN)) for the noun files.
NOUN_LEXNAMES = {
    3: "Tops", 4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body", 9: "cognition",
    10: "communication", 11: "event", 12: "feeling", 13: "food", 14: "group", 15: "location", 16: "motive",
    17: "object", 18: "person", 19: "phenomenon", 20: "plant", 21: "possession", 22: "process",
    23: "quantity", 24: "relation", 25: "shape", 26: "state", 27: "substance", 28: "time",
}
WN_TOPIC_LABELS = ("animal", "artifact", "body", "food", "location", "person", "plant", "substance")


def noun_glosses(wordnet: Path) -> dict[str, list[tuple[str, str]]]:
    """category -> [(lemma, definition)], definitions cut before examples (they quote the word)."""
    path = wordnet / "data.noun"
    if not path.is_file():
        raise InputError(wordnet, "no data.noun", "pass a WordNet 3.0 dict directory")
    out: dict[str, list[tuple[str, str]]] = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  ") or " | " not in line:
                continue  # licence header
            fields, gloss = line.split(" | ", 1)
            parts = fields.split()
            category = NOUN_LEXNAMES.get(int(parts[1]))
            definition = gloss.split(";")[0].split('"')[0].strip()
            if category and len(definition) > 12:
                out.setdefault(category, []).append((parts[4].replace("_", " "), definition))
    return out


def build_wn_topic(
    wordnet: Path, out_dir: Path, seed: int = 0, per_label_train: int = 200, val: int = 512, test: int = 512,
    labels: tuple[str, ...] = WN_TOPIC_LABELS,
) -> dict[str, Path]:
    """Write train/val/test JSONL (balanced, seeded); returns the split paths. Cached by content."""
    paths = {s: out_dir / f"{s}.jsonl" for s in ("train", "val", "test")}
    if all(p.is_file() for p in paths.values()):
        return paths
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
    return paths


def _write_splits(out_dir: Path, splits: dict[str, list[dict[str, str]]]) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    for name, rows in splits.items():
        with (tmp / f"{name}.jsonl").open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    if out_dir.exists():
        os.rmdir(out_dir)  # only an empty leftover; a complete one returned early
    os.replace(tmp, out_dir)
