"""Base evolution Theta -> Theta': continual pretraining as in paper 4.1
(LoRA r=64, lr 2e-4 on every linear layer, merged into the weights)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from relora.errors import InputError, TrainingDiverged
from relora.core.model.device import resolve_device
from relora.core.model.models import load_model, load_tokenizer
from relora.core.run.outputs import check_out, check_replaceable, write_marker
from relora.core.model.resolve import resolve_base
from relora.io import atomic_dir, cache_root, content_hash
from relora.provenance import git_revision, package_versions

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def read_corpus(paths: list[str]) -> str:
    """Plain text, or JSONL with a "text" field per line."""
    texts = []
    for spec in paths:
        path = Path(spec)
        if not path.is_file():
            raise InputError(path, "corpus file not found", "pass plain-text or JSONL files to --corpus")
        raw = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".jsonl":
            try:
                raw = "\n\n".join(json.loads(line)["text"] for line in raw.splitlines() if line.strip())
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(path, "JSONL corpus lines need a \"text\" field", "fix the file") from exc
        texts.append(raw)
    text = "\n\n".join(texts)
    if len(text.split()) < 50:
        raise InputError(paths[0], "corpus is nearly empty", "pass a larger corpus")
    return text


def token_blocks(ids: list[int], block: int) -> torch.Tensor:
    n = len(ids) // block
    return torch.tensor(ids[: n * block]).view(n, block)


PROBE_FILE = "update-probe.txt"  # held-out text of the update's kind: what retention is measured on
PROBE_BLOCKS = 64


def held_out(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(training blocks, probe blocks): the corpus's last blocks (at most 5%, at most PROBE_BLOCKS) are never
    trained on, so a re-adapted service's loss on them tells whether it kept the update."""
    k = min(PROBE_BLOCKS, len(blocks) // 20)
    return (blocks[: len(blocks) - k], blocks[len(blocks) - k :]) if k else (blocks, blocks[:0])


@dataclass(frozen=True, kw_only=True)
class EvolveRecipe:
    """The update: a LoRA of this rank continually pretrained for `steps` batches of `batch_size` blocks of
    `block` tokens at `lr`, then merged (the paper's 4.1 defaults)."""
    steps: int = 300
    batch_size: int = 8
    block: int = 128
    rank: int = 64
    lr: float = 2e-4
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class EvolveRun:
    """How it runs: replace an existing out, the cache, the progress bar, the device."""
    force: bool = False
    cache_dir: str | None = None
    progress: bool = True
    device: str = "auto"


def evolve(base: str, corpus: list[str], out: str, recipe: EvolveRecipe = EvolveRecipe(),
           run: EvolveRun = EvolveRun()) -> dict[str, Any]:
    """Continual-pretrain a LoRA on the corpus, merge it, save a safetensors model dir (float32, on the CPU,
    whatever device trained it)."""
    steps, batch_size, block, rank, lr, seed = (recipe.steps, recipe.batch_size, recipe.block, recipe.rank, recipe.lr,
                                                recipe.seed)
    force, cache_dir, progress, device = run.force, run.cache_dir, run.progress, run.device
    from peft import LoraConfig, get_peft_model

    out_path = check_out(out, flag="--out", inputs=[p for p in (base, *corpus) if Path(p).exists()])
    if out_path.exists() and not force:
        raise InputError(out_path, "already exists", "choose a new --out or pass --force")
    check_replaceable(out_path, flag="--out")
    cache = cache_root(cache_dir)
    base_dir = resolve_base(base, cache)
    tok = load_tokenizer(base_dir)
    blocks, probe = held_out(token_blocks(tok(read_corpus(corpus), add_special_tokens=False)["input_ids"], block))
    if len(blocks) == 0:
        raise InputError(corpus[0], f"corpus shorter than one {block}-token block", "pass a larger corpus")
    torch.manual_seed(seed)
    where = resolve_device(device)
    model = get_peft_model(load_model(base_dir, where), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=ALL_LINEAR,
                                                            lora_dropout=0.0, task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    losses, start = [], time.perf_counter()
    for _ in tqdm(range(steps), desc="evolve", disable=not progress):
        batch = blocks[torch.randint(len(blocks), (batch_size,), generator=gen)].to(where)
        loss = model(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"evolution loss became {float(loss)}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    merged = model.merge_and_unload().to("cpu")
    record = {
        "base": base, "corpus": corpus, "corpus_hash": content_hash([Path(c) for c in corpus], cache),
        "steps": steps, "batch_size": batch_size, "block": block, "rank": rank, "lr": lr, "seed": seed,
        "tokens_in_corpus": int(blocks.numel()), "probe_blocks": len(probe), "loss_first": losses[0],
        "loss_last_mean10": sum(losses[-10:]) / min(10, len(losses)),
        "train_s": time.perf_counter() - start, "device": str(where), "git_revision": git_revision(), "packages": package_versions(),
    }
    probe_text = "\n\n".join(tok.decode(row) for row in probe.tolist())
    _save_atomically(merged, tok, record, out_path, probe_text)
    return record


def _save_atomically(model: torch.nn.Module, tok: Any, record: dict[str, Any], out: Path, probe_text: str) -> None:
    with atomic_dir(out, replace=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if probe_text:
            (tmp / PROBE_FILE).write_text(probe_text + "\n")
        (tmp / "evolve.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        write_marker(tmp, "evolved base")
