"""Builders the tests share: a tiny random Llama pair, a word-level tokenizer, learnable tasks,
the readapt and fleet configs sized for tests, and a full-logits reference evaluator.
Everything is built locally and seeded; conftest.py turns them into fixtures."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

LABELS = ["alpha", "beta", "gamma"]
CUES = {"alpha": ["sun", "fire", "gold"], "beta": ["moon", "water", "silver"], "gamma": ["tree", "stone", "iron"]}
FILLER = [f"w{i}" for i in range(40)]
CHOICE_WORDS = ["red fox", "blue owl", "green frog", "grey wolf"]
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
WN_LABELS = ["animal", "artifact", "body", "food", "location", "person", "plant", "substance"]
WN_CUES = {label: f"cue{i}" for i, label in enumerate(WN_LABELS)}


@dataclass(frozen=True)
class TinyWorld:
    old_base: Path
    new_base: Path
    adapter: Path
    train: Path
    val: Path
    test: Path
    mc_train: Path
    mc_val: Path
    root: Path


def _vocab(extra_words: tuple[str, ...] = ()) -> list[str]:
    words = set(LABELS) | {w for ws in CUES.values() for w in ws} | set(FILLER)
    words |= {w for phrase in CHOICE_WORDS for w in phrase.split()}
    words |= set(WN_LABELS) | set(WN_CUES.values()) | {"Topic", "of"}
    return SPECIALS + sorted(words | {"Answer", ":", "?", "which"} | set(extra_words))


def build_tokenizer(path: Path, extra_words: tuple[str, ...] = ()) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(_vocab(extra_words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.save_pretrained(path)


def build_tiny_llama(path: Path, vocab_size: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    return model


def perturb(model: torch.nn.Module, path: Path, scale: float = 0.5) -> None:
    """New base = old + a structured update: rank-4 on attention, small noise elsewhere."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim != 2:
                continue
            if "self_attn" in name:
                d, k = p.shape
                u, v = torch.randn(d, 4, generator=gen), torch.randn(4, k, generator=gen)
                p.add_(scale * p.norm() * (u @ v) / (u @ v).norm())
            else:
                p.add_(0.01 * torch.randn(p.shape, generator=gen) * p.std())
    model.save_pretrained(path)


def write_task(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for _ in range(n):
            label = rng.choice(LABELS)
            words = rng.sample(FILLER, 5) + [rng.choice(CUES[label])]
            rng.shuffle(words)
            fh.write(json.dumps({"text": " ".join(words), "label": label}) + "\n")


def write_mc_task(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w") as fh:
        for _ in range(n):
            choices = rng.sample(CHOICE_WORDS, 3)
            gold = choices[0]  # the cue word in the text names the gold animal
            words = rng.sample(FILLER, 3) + [gold.split()[1]]
            rng.shuffle(choices)
            fh.write(json.dumps({"text": " ".join(words) + " which ?", "label": gold, "choices": choices}) + "\n")


def build_world(root: Path) -> TinyWorld:
    """Two tiny bases (the new one a structured update of the old), the tasks, and an old adapter
    trained on the old base with the scratch method."""
    from relora.core.model.config import ReadaptConfig
    from relora.core.run.readapt import readapt

    old, new = root / "old_base", root / "new_base"
    for base in (old, new):
        build_tokenizer(base)
    model = build_tiny_llama(old, len(_vocab()))
    perturb(model, new)
    for split, n, seed in (("train", 192, 0), ("val", 48, 1), ("test", 48, 2)):
        write_task(root / f"{split}.jsonl", n, seed)
    write_mc_task(root / "mc_train.jsonl", 64, 3)
    write_mc_task(root / "mc_val.jsonl", 24, 4)
    cfg = ReadaptConfig(method="scratch", new_base=str(old), train=str(root / "train.jsonl"),
                        val=str(root / "val.jsonl"), out=str(root / "old_adapter"), cache_dir=str(root / "cache"),
                        training={"steps": 60, "lr": 3e-2, "batch_size": 16, "rank": 8, "lora_alpha": 16,
                                  "eval_every": 20, "target_modules": ["q_proj", "v_proj"]})
    readapt(cfg, progress=False)
    return TinyWorld(old, new, root / "old_adapter", root / "train.jsonl", root / "val.jsonl",
                     root / "test.jsonl", root / "mc_train.jsonl", root / "mc_val.jsonl", root)


def fast_config(world: TinyWorld, out: Path, method: str, **extra: object) -> dict:
    """A readapt config sized for tests: few probes, few steps."""
    cfg = {
        "method": method, "old_base": str(world.old_base), "new_base": str(world.new_base),
        "adapter": str(world.adapter), "train": str(world.train), "val": str(world.val), "test": str(world.test),
        "out": str(out), "cache_dir": str(world.root / "cache"), "seed": 0,
        "training": {"steps": 12, "lr": 5e-3, "lr_min": 1e-4, "batch_size": 16, "micro_batch_size": 8,
                     "eval_every": 4},
        "search": {"trials": 6, "n_init": 3, "grid_size": 3, "raw_samples": 32, "num_restarts": 2},
    }
    cfg.update(extra)
    return cfg


RELORA = str(Path(sys.executable).with_name("relora"))
LEDGER_PASSWORD = "s3cr3t-pw"  # every ledger URL with a password in the suite uses it; conftest.py greps for it


def write_fleet(world: TinyWorld, tmp_path: Path, n: int = 3, steps: int = 8, **extra: object) -> Path:
    """FLEET.yaml with n services that all reuse the tiny world's adapter and task."""
    entries = [{"name": f"svc{i}", "path": str(world.adapter), "train": str(world.train), "val": str(world.val)}
               for i in range(n)]
    fleet = {
        "old_base": str(world.old_base), "new_base": str(world.new_base), "out": str(tmp_path / "out"),
        "defaults": {"method": "relora", "threshold": 0.5, "readapt": {
            "training": {"steps": steps, "lr": 5e-3, "batch_size": 16, "eval_every": 4},
            "search": {"trials": 3, "n_init": 3}}},
        "adapters": entries, "lease_s": 3, "cache_dir": str(world.root / "cache"),
    } | extra
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    return path


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp stores q/k rows interleaved per rotary pair; transformers undoes this on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path) -> torch.nn.Module:
    """A tiny Llama as llama.cpp would write it: Q8_0 matrices, F32 norms, a byte-level BPE vocabulary.
    Returns the fp32 model it was written from."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=1,
                      eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    for add, value in ((writer.add_block_count, 2), (writer.add_context_length, 128), (writer.add_embedding_length, 64),
                       (writer.add_feed_forward_length, 128), (writer.add_head_count, 4), (writer.add_head_count_kv, 2),
                       (writer.add_rope_dimension_count, 16), (writer.add_layer_norm_rms_eps, cfg.rms_norm_eps),
                       (writer.add_rope_freq_base, 10000.0), (writer.add_tokenizer_model, "gpt2"),
                       (writer.add_bos_token_id, 1), (writer.add_eos_token_id, 2)):
        add(value)
    spelling = bytes_to_unicode()
    writer.add_token_list([spelling[b] for b in range(256)] + [spelling[32] + spelling[97]])
    writer.add_token_types([1] * 257)
    writer.add_token_merges([f"{spelling[32]} {spelling[97]}"])
    names = {"model.embed_tokens.weight": "token_embd", "model.norm.weight": "output_norm", "lm_head.weight": "output"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
                 "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    names |= {f"model.layers.{i}.{hf}.weight": f"blk.{i}.{g}" for i in range(2) for hf, g in per_layer.items()}
    state = model.state_dict()
    for hf, name in names.items():
        tensor = state[hf].float().numpy()
        if name.endswith(("attn_q", "attn_k")):
            tensor = _llama_cpp_permute(tensor, 4 if name.endswith("attn_q") else 2)
        if tensor.ndim == 2:
            packed = gguf.quants.quantize(tensor, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(f"{name}.weight", packed, raw_shape=packed.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(f"{name}.weight", tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


def copy_adapter(adapter: Path, to: Path) -> Path:
    """The same LoRA under another content hash: another service's adapter, as the index sees it."""
    import shutil

    shutil.copytree(adapter, to)
    config = to / "adapter_config.json"
    config.write_text(config.read_text() + "\n")
    return to


def write_probe(path: Path, blocks: int = 6, seed: int = 5) -> Path:
    """An update probe for the tiny world: word-level text, one token per word, `blocks` 64-token blocks."""
    rng = random.Random(seed)
    words = [rng.choice(FILLER + [w for ws in CUES.values() for w in ws]) for _ in range(64 * blocks)]
    path.write_text(" ".join(words) + "\n")
    return path
