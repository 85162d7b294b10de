"""Every PEFT LoRA option is handled or refused in one line, through the real CLI with the inputs hashed before
and after. Refused (exit 2, the option named with the fix, nothing left behind): what relora cannot carry to
the output. Handled: the output, loaded by PEFT itself on the new base, computes what relora scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import TinyWorld
from test_bad_input import copy_adapter, readapt_args, run_cli, set_key, tree_hash, world_inputs

# case -> (adapter_config.json key, value, words the one line must hold)
OPTIONS = {
    "bias all": ("bias", "all", "bias"),
    "bias lora_only": ("bias", "lora_only", "bias"),
    "lora_bias": ("lora_bias", True, "lora_bias"),
    "modules_to_save": ("modules_to_save", ["lm_head"], "modules_to_save"),
    "trainable_token_indices": ("trainable_token_indices", [5, 6], "trainable_token_indices"),
    # the layer options are carried, but must select the modules the weights have (here: both layers)
    "layers_to_transform that skips weights": ("layers_to_transform", [0], "PEFT's target options skip it"),
    "exclude_modules that skips weights": ("exclude_modules", ["v_proj"], "PEFT's target options skip it"),
    "fan_in_fan_out": ("fan_in_fan_out", True, "fan_in_fan_out"),
    "alpha_pattern": ("alpha_pattern", {"q_proj": 4}, "alpha_pattern"),
    "unconverted PiSSA": ("init_lora_weights", "pissa", "init_lora_weights"),
    "unconverted OLoRA": ("init_lora_weights", "olora", "init_lora_weights"),
    "LoRA on embed_tokens": ("target_modules", ["q_proj", "v_proj", "embed_tokens"], "embed_tokens"),
    "a target without weights": ("target_modules", ["q_proj", "v_proj", "k_proj"], "k_proj"),
}


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_an_option_relora_cannot_carry_is_refused_in_one_line(world: TinyWorld, tmp_path: Path, case: str) -> None:
    key, value, needle = OPTIONS[case]
    adapter = copy_adapter(world, tmp_path, set_key(key, value))
    before = tree_hash(*world_inputs(world), adapter)
    line = run_cli(readapt_args(world, tmp_path / "out", adapter=adapter) + ["--method", "portllm"], 2, needle)
    assert "adapter_config.json" in line
    assert tree_hash(*world_inputs(world), adapter) == before
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_a_fresh_lora_on_an_embedding_is_refused(world: TinyWorld, tmp_path: Path) -> None:
    args = ["train-adapter", "--base", str(world.old_base), "--train", str(world.train), "--val", str(world.val),
            "--out", str(tmp_path / "out"), "--steps", "2", "training.target_modules=[embed_tokens]",
            f"cache_dir={world.root / 'cache'}"]
    run_cli(args, 2, "embed_tokens is an embedding")
    assert not (tmp_path / "out").exists()


def test_a_base_without_tokenizer_files_is_one_line(world: TinyWorld, tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(world.new_base, base)
    for f in base.iterdir():
        if "token" in f.name or f.suffix in (".model", ".txt") and f.name != "config.json":
            f.unlink()
    run_cli(readapt_args(world, tmp_path / "out", **{"new-base": base}) + ["--method", "portllm"], 2, "tokenizer")
    assert not (tmp_path / "out").exists()


def test_a_pickle_beside_the_safetensors_is_never_loaded(world: TinyWorld, tmp_path: Path) -> None:
    """A base directory that also holds pytorch_model.bin: the run loads the safetensors (a pickle that would
    fail to unpickle sits beside them, and the run still works)."""
    from click.testing import CliRunner

    from relora.cli import main

    base = tmp_path / "base"
    shutil.copytree(world.new_base, base)
    (base / "pytorch_model.bin").write_bytes(b"not a pickle: loading this would fail")
    run = CliRunner().invoke(main, readapt_args(world, tmp_path / "out", **{"new-base": base}) + ["--method", "portllm"])
    assert run.exit_code == 0, run.output


def only(keep: str):
    """A tensor edit keeping the LoRA weights whose key holds `keep`."""
    return lambda tensors: [tensors.pop(k) for k in list(tensors) if keep not in k] and None


def drop(gone: str):
    return lambda tensors: [tensors.pop(k) for k in list(tensors) if gone in k] and None


# case -> (adapter_config.json changes, tensor edit, extra readapt args, what the output's config must keep)
HANDLED = {
    "plain": ({}, None, [], {"use_rslora": False}),
    "use_rslora": ({"use_rslora": True}, None, [], {"use_rslora": True}),
    "use_rslora, --portable": ({"use_rslora": True}, None, ["--portable"], {"use_rslora": False}),
    "layers_to_transform": ({"layers_to_transform": [1]}, only(".layers.1."), [], {"layers_to_transform": [1]}),
    "layers_pattern": ({"layers_to_transform": [0], "layers_pattern": "layers"}, only(".layers.0."), [],
                       {"layers_to_transform": [0], "layers_pattern": "layers"}),
    "exclude_modules": ({"exclude_modules": ["model.layers.0.self_attn.v_proj"]}, drop(".layers.0.self_attn.v_proj"),
                        [], {"exclude_modules": ["model.layers.0.self_attn.v_proj"]}),
}


@pytest.mark.parametrize("case", sorted(HANDLED))
def test_a_handled_option_serves_in_peft_what_relora_scored(world: TinyWorld, tmp_path: Path, case: str) -> None:
    """relora's scored D_val loss and per-example answers equal PEFT's own forward of the saved output on the new
    base; the option is kept in the output; the lineage sidecar names both bases by the hashes the record has."""
    from click.testing import CliRunner
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from relora.cli import main
    from relora.core.model.config import ReadaptConfig
    from relora.core.run.inputs import tokenized_val
    from relora.core.model.models import load_tokenizer
    from relora.core.method.record import RunRecord
    from relora.core.model.scoring import evaluate

    changes, tensors, extra, kept = HANDLED[case]
    adapter = copy_adapter(world, tmp_path, lambda cfg: cfg | changes, tensors)
    before = tree_hash(*world_inputs(world), adapter)
    out = tmp_path / "out"
    run = CliRunner().invoke(main, readapt_args(world, out, adapter=adapter) + ["--method", "relora"] + extra)
    assert run.exit_code == 0, run.output
    assert tree_hash(*world_inputs(world), adapter) == before
    record = RunRecord.load(out)
    saved = json.loads((out / "adapter_config.json").read_text())
    assert {k: saved.get(k) for k in kept} == kept
    lineage = json.loads((out / "relora_lineage.json").read_text())
    assert lineage["new_base"]["sha256"] == record.hashes["new_base"]
    assert lineage["old_base"]["sha256"] == record.hashes["old_base"]
    assert lineage["rslora_folded"] == ("--portable" in extra)
    served = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(world.new_base), str(out)).eval()
    tok = load_tokenizer(world.new_base)
    val = tokenized_val(ReadaptConfig(**record.config), tok, record.labels)
    scored = evaluate(served, val, tok.pad_token_id)
    assert scored.loss == pytest.approx(record.metrics.val_loss, abs=1e-5) and scored.correct == record.val_correct
    assert len(served.peft_config["default"].target_modules) and record.n_examples["val_ready"] == len(val)


def test_an_rslora_output_served_at_alpha_over_r_differs_unless_folded(world: TinyWorld, tmp_path: Path) -> None:
    """Why --portable exists: the same rsLoRA output read with plain scaling (as SGLang does) scores another loss."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from relora.core.model.adapter import fold_rslora
    from relora.core.model.config import ReadaptConfig
    from relora.core.run.inputs import tokenized_val
    from relora.core.model.models import load_tokenizer
    from relora.core.model.scoring import evaluate

    adapter = copy_adapter(world, tmp_path, lambda cfg: cfg | {"use_rslora": True})
    tok = load_tokenizer(world.new_base)
    cfg = ReadaptConfig(new_base=str(world.new_base), train=str(world.train), val=str(world.val), out="unused")
    labels = sorted({json.loads(line)["label"] for line in world.train.read_text().splitlines()})
    val = tokenized_val(cfg, tok, labels)

    def loss(path: Path) -> float:
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(world.new_base), str(path)).eval()
        return evaluate(model, val, tok.pad_token_id).loss

    as_trained = loss(adapter)
    misread = tmp_path / "misread"
    shutil.copytree(adapter, misread)
    cfg_path = misread / "adapter_config.json"
    cfg_path.write_text(json.dumps(json.loads(cfg_path.read_text()) | {"use_rslora": False}))
    assert abs(loss(misread) - as_trained) > 1e-3
    folded = tmp_path / "folded"
    shutil.copytree(adapter, folded)
    fold_rslora(folded)
    assert loss(folded) == pytest.approx(as_trained, abs=1e-5)


def test_an_output_rank_outside_vllms_set_is_warned_with_the_nearest(world: TinyWorld, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from relora.cli import main
    from relora.core.method.record import RunRecord

    run = CliRunner().invoke(main, readapt_args(world, tmp_path / "out") + ["--method", "scratch", "training.rank=10"])
    assert run.exit_code == 0, run.output
    warned = [ln for ln in run.stderr.splitlines() if "vLLM's ranks" in ln]
    assert len(warned) == 1 and "r=10" in warned[0] and "the nearest is 8" in warned[0], run.stderr
    assert "--max-lora-rank 16" in warned[0]
    assert RunRecord.load(tmp_path / "out").serving_warnings == [warned[0].split(": ", 3)[3]]  # kept in relora.json
