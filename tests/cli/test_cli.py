"""The real CLI end to end, and every bad input: one line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from relora.cli import main
from relora.core.method.methods import METHODS

from helpers import build_tokenizer, _vocab


def _args(world, out: Path, *extra: str) -> list[str]:
    return ["readapt", "--old-base", str(world.old_base), "--new-base", str(world.new_base),
            "--adapter", str(world.adapter), "--train", str(world.train), "--val", str(world.val),
            "--out", str(out), "--quiet", f"cache_dir={world.root / 'cache'}", "search.trials=4", "search.n_init=3",
            "search.raw_samples=32", "search.num_restarts=2", "training.batch_size=16", "training.eval_every=4",
            "training.lr=5e-3", "--steps", "8", *extra]


def test_cli_end_to_end_smoke(world, tmp_path: Path) -> None:
    """The installed console script, as a user runs it, with a YAML config plus overrides."""
    config = tmp_path / "run.yaml"
    config.write_text("method: relora\nthreshold: 0.5\ntraining:\n  lambda1: 0.01\n")
    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("relora")
    proc = subprocess.run([str(exe), *_args(world, out, "--config", str(config), "--test", str(world.test))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    record = json.loads((out / "relora.json").read_text())
    stages = [p["stage"] for p in record["probes"]]
    explored = stages.count("explore")
    # the known points screened, the best re-scored on D_val, the learned coefficients judged on D_val
    assert summary["method"] == "relora" and record["search_strategy"] == "gradient"
    assert stages == ["explore"] * explored + ["rescore", "gradient"] and explored == 2
    assert record["config"]["training"]["lambda1"] == 0.01 and record["config"]["training"]["steps"] == 8
    assert "test_accuracy" in record["metrics"]
    inspected = subprocess.run([str(exe), "inspect", str(out), "--base", str(world.new_base)], capture_output=True,
                               text=True, timeout=120)
    assert inspected.returncode == 0 and json.loads(inspected.stdout)["fits_base"] is True


def _bad_jsonl(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    return path


def _shifted_adapter(world, tmp_path: Path) -> Path:
    bad = tmp_path / "adapter_missing_module"
    shutil.copytree(world.adapter, bad)
    tensors = load_file(bad / "adapter_model.safetensors")
    tensors = {k.replace("layers.1.", "layers.7."): v for k, v in tensors.items()}
    save_file(tensors, bad / "adapter_model.safetensors")
    return bad


def _other_shape_base(tmp_path: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path / "other_base"
    build_tokenizer(path)
    cfg = LlamaConfig(vocab_size=len(_vocab()), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def _corrupt_adapter(world, tmp_path: Path) -> Path:
    bad = tmp_path / "corrupt"
    shutil.copytree(world.adapter, bad)
    (bad / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    return bad


BAD_INPUTS = {
    "shapes differ": (lambda w, t: ["--old-base", str(_other_shape_base(t))], "hidden_size 64 differs from the old base"),
    "module missing": (lambda w, t: ["--adapter", str(_shifted_adapter(w, t))], "missing"),
    "rank too large": (lambda w, t: ["training.rank=1000"], "exceeds"),
    "empty jsonl": (lambda w, t: ["--train", str(_bad_jsonl(t, "\n"))], "no examples"),
    "malformed jsonl": (lambda w, t: ["--train", str(_bad_jsonl(t, '{"text": "a", "label": "alpha"}\n{oops\n'))],
                        "line 2"),
    "label outside set": (lambda w, t: ["--val", str(_bad_jsonl(t, '{"text": "w1", "label": "delta"}\n'))],
                          "outside the label set"),
    "threshold out of range": (lambda w, t: ["--threshold", "1.5"], "threshold"),
    "missing file": (lambda w, t: ["--train", str(t / "nope.jsonl")], "not found"),
    "corrupt adapter": (lambda w, t: ["--adapter", str(_corrupt_adapter(w, t))], "unreadable"),
    "nan loss": (lambda w, t: ["training.lr=1e30"], "diverged"),
    "bad override": (lambda w, t: ["training.nosuchkey=1"], "nosuchkey"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_exit_2_nothing_written(world, tmp_path: Path, case: str) -> None:
    make_args, needle = BAD_INPUTS[case]
    out = tmp_path / "out"
    extra = make_args(world, tmp_path)
    args = _args(world, out)
    for flag_pos in range(0, len(extra), 2):  # a repeated flag: the later value wins in click
        args += extra[flag_pos : flag_pos + 2]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("relora: error:")]
    assert len(lines) == 1 and needle in lines[0] and "fix:" in lines[0], result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_bench_rejects_an_unknown_method_before_any_work(tmp_path: Path) -> None:
    run = CliRunner().invoke(main, ["lab", "bench", "--methods", "relora,retrain", "--out", str(tmp_path / "b")])
    assert run.exit_code == 2 and "retrain" in run.output and "choose from" in run.output
    assert not (tmp_path / "b").exists()
    # a method the bench cannot run is named with the reason, not called unknown
    run = CliRunner().invoke(main, ["lab", "bench", "--methods", "relora-keep", "--out", str(tmp_path / "b")])
    assert run.exit_code == 2 and "relora-keep needs an update probe" in run.output and "relora lab race" in run.output
    assert not (tmp_path / "b").exists()


def test_every_bench_profile_is_a_cli_choice() -> None:
    from relora.lab.run import PROFILES
    from relora.cli.bench import bench_cmd

    from relora.cli.fleet import race_cmd
    from relora.lab.race import RACE_PROFILES

    choices = next(p for p in bench_cmd.params if p.name == "profile").type.choices
    assert set(choices) == set(PROFILES) | {"update-pilot"}
    races = next(p for p in race_cmd.params if p.name == "profile").type.choices  # a race starts one way only
    assert set(races) == set(RACE_PROFILES) and not set(races) & set(choices)


def test_the_help_lists_the_user_commands_and_one_lab_group() -> None:
    """`relora --help` is the product: eight user commands and the lab group holding everything else."""
    from relora.cli import main

    users = {"readapt", "train-adapter", "inspect", "methods", "preflight", "rollout", "status", "report",
             "demo"}
    assert set(main.commands) == users | {"lab"}
    assert set(main.commands["lab"].commands) == {"bench", "perf", "evolve", "task", "backbones", "race",
                                                  "fleet-demo"}
    run = CliRunner().invoke(main, ["lab", "race", "--out", "x"])
    assert run.exit_code == 2 and "needs either FLEET.yaml or --profile" in run.stderr


def test_option_help_is_the_config_fields_description() -> None:
    """Every readapt and train-adapter option that sets a config key says what the key's description says."""
    from relora.cli import main
    from relora.core.model.config import ReadaptConfig

    keys = {"train_file": "train", "val_file": "val", "test_file": "test", "steps": "training.steps",
            "rank": "training.rank", "track": "tracking"}
    checked = 0
    for command in ("readapt", "train-adapter"):
        for param in main.commands[command].params:
            key = keys.get(param.name, param.name)
            *parents, name = key.split(".")
            model = ReadaptConfig
            for part in parents:
                model = model.model_fields[part].annotation
            if isinstance(param, click.Option) and name in model.model_fields:
                assert param.help.startswith(model.model_fields[name].description), (command, param.name)
                checked += 1
    assert checked >= 22


def test_methods_lists_every_registered_method_with_its_summary_in_one_column() -> None:
    run = CliRunner().invoke(main, ["methods"])
    assert run.exit_code == 0
    lines = run.output.splitlines()
    assert [line.split()[0] for line in lines] == list(METHODS)
    starts = {line.index(m.summary) for line, m in zip(lines, METHODS.values(), strict=True)}
    assert len(starts) == 1 and starts.pop() >= max(map(len, METHODS)) + 2
