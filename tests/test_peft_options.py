"""Every PEFT option that changes what an adapter serves and that relora cannot carry is refused in one line
through the real CLI (exit 2, the option named with the fix), with the inputs unchanged and nothing left."""

from __future__ import annotations

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
    "layers_to_transform": ("layers_to_transform", [0], "layers_to_transform"),
    "layers_pattern": ("layers_pattern", "layers", "layers_pattern"),
    "exclude_modules": ("exclude_modules", ["k_proj"], "exclude_modules"),
    "fan_in_fan_out": ("fan_in_fan_out", True, "fan_in_fan_out"),
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
