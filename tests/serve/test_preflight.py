"""relora preflight: each engine rule on an adapter built to break it, through the real CLI, and a rollout
with preflight: [vllm, sglang] that keeps the old adapter of a service whose new one an engine would refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from helpers import TinyWorld, write_fleet
from relora.cli import main
from relora.fleet.ledger import Ledger


def edited(world: TinyWorld, tmp_path: Path, config: dict | None = None, keys=None) -> Path:
    """A copy of the tiny world's adapter with config keys set and its tensors rewritten by keys(tensors)."""
    path = tmp_path / "adapter"
    shutil.copytree(world.adapter, path)
    if config:
        cfg = json.loads((path / "adapter_config.json").read_text()) | config
        (path / "adapter_config.json").write_text(json.dumps(cfg))
    if keys:
        tensors = keys(load_file(path / "adapter_model.safetensors"))
        save_file(tensors, path / "adapter_model.safetensors")
    return path


def drop_layer_1_q(tensors: dict) -> dict:
    return {k: v for k, v in tensors.items() if not (".layers.1." in k and "q_proj" in k)}


def wrong_prefix(tensors: dict) -> dict:
    return {k.replace(".model.layers.", ".model.decoder.layers."): v for k, v in tensors.items()}


def zero_b(tensors: dict) -> dict:
    return {k: v * 0 if "lora_B" in k else v for k, v in tensors.items()}


# case -> (config changes, tensor rewrite, extra CLI args, {engine: rule it must refuse on} )
CASES = {
    "DoRA": ({"use_dora": True}, None, [], {"vllm": "DoRA", "sglang": "DoRA"}),
    "rank above --max-lora-rank": ({}, None, ["--max-lora-rank", "1"], {"vllm": "rank"}),
    "modules_to_save": ({"modules_to_save": ["lm_head"]}, None, [], {"vllm": "modules_to_save"}),
    "bias": ({"bias": "all"}, None, [], {"vllm": "bias"}),
    "rsLoRA": ({"use_rslora": True}, None, [], {"sglang": "rsLoRA", "lorax": "rsLoRA"}),
    "added tokens": ({"trainable_token_indices": [5]}, None, [], {"sglang": "added tokens"}),
    "a layer missing a module type": ({}, drop_layer_1_q, [], {"lorax": "missing layer"}),
    # PEFT loads nothing from the misnamed keys either, so no engine would see the adapter act
    "wrong key prefix": ({}, wrong_prefix, ["--base", "BASE"], {"vllm": "key prefix", "sglang": "acts", "lorax": "acts"}),
    "an adapter that does nothing": ({}, zero_b, ["--base", "BASE"], {"vllm": "acts", "sglang": "acts", "lorax": "acts"}),
    # what PEFT itself refuses, with or without a base (and without PEFT's traceback)
    "r 0": ({"r": 0}, None, [], {"vllm": "peft", "sglang": "peft", "lorax": "peft"}),
    "r 0 on a base": ({"r": 0}, None, ["--base", "BASE"], {"vllm": "peft", "sglang": "peft", "lorax": "peft"}),
    "no target modules": ({"target_modules": []}, None, ["--base", "BASE"],
                          {"vllm": "peft", "sglang": "peft", "lorax": "peft"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_refuses_the_adapter_that_breaks_it(world: TinyWorld, tmp_path: Path, case: str) -> None:
    config, keys, extra, refusals = CASES[case]
    adapter = edited(world, tmp_path, config, keys)
    args = ["preflight", str(adapter), *[str(world.old_base) if a == "BASE" else a for a in extra]]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 1, run.output
    lines = {ln.split(":", 1)[0]: ln for ln in run.stdout.splitlines()}
    assert set(lines) == {"vllm", "sglang", "lorax"}
    for engine, line in lines.items():
        if engine in refusals:
            assert line.startswith(f"{engine}: refused") and f"({refusals[engine]})" in line and "[" in line, line
        else:
            assert "refused" not in line, line


def test_a_clean_adapter_loads_everywhere_and_acts(world: TinyWorld, tmp_path: Path) -> None:
    run = CliRunner().invoke(main, ["preflight", str(world.adapter), "--base", str(world.old_base)])  # its own base
    assert run.exit_code == 0, run.output
    assert run.stdout.splitlines() == ["vllm: loads", "sglang: loads", "lorax: loads"]


def test_a_rank_outside_vllms_set_is_a_warning_naming_the_nearest(world: TinyWorld, tmp_path: Path) -> None:
    def rank_4(tensors: dict) -> dict:
        return {k: (v[:4] if "lora_A" in k else v[:, :4]).contiguous() for k, v in tensors.items()}

    adapter = edited(world, tmp_path, {"r": 4}, rank_4)
    run = CliRunner().invoke(main, ["preflight", str(adapter), "--engine", "vllm"])
    assert run.exit_code == 0 and "loads, with warnings (rank set)" in run.output
    assert "r=8 is the nearest allowed rank" in run.output


def rsloRA_rollout(world: TinyWorld, tmp_path: Path, portable: bool) -> dict[str, dict]:
    """Two services on the tiny world, svc1's old adapter with rsLoRA, preflight [vllm, sglang]: the ledger rows."""
    rslora = edited(world, tmp_path, {"use_rslora": True})
    spec = yaml.safe_load(write_fleet(world, tmp_path, n=2, steps=4).read_text())
    spec["adapters"][1]["path"] = str(rslora)
    spec["preflight"] = ["vllm", "sglang"]
    spec["defaults"]["readapt"]["portable"] = portable
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(spec))
    run = CliRunner().invoke(main, ["rollout", str(tmp_path / "fleet.yaml"), "--quiet"])
    assert run.exit_code == 0, run.output
    return {r["name"]: r for r in Ledger(f"sqlite:///{tmp_path / 'out' / 'ledger.sqlite3'}").rows()}


def test_a_rollout_keeps_the_old_adapter_when_an_engine_would_refuse_the_new_one(world: TinyWorld,
                                                                                tmp_path: Path) -> None:
    """svc1's old adapter uses rsLoRA, which its re-adapted output keeps; SGLang would serve it at the wrong
    scale, so with preflight: [vllm, sglang] it is not published and the ledger says why."""
    rows = rsloRA_rollout(world, tmp_path, portable=False)
    assert rows["svc0"]["preflight"] == "vllm: loads | sglang: loads"
    assert rows["svc1"]["state"] == "below-threshold" and "sglang: refused (rsLoRA)" in rows["svc1"]["preflight"]
    assert "would not load" in rows["svc1"]["error"]
    assert not (tmp_path / "out" / "published" / "svc1").exists()


def test_a_portable_rollout_publishes_the_rslora_service_folded(world: TinyWorld, tmp_path: Path) -> None:
    """portable: true folds sqrt(r) into lora_B, so SGLang's alpha/r scale is right and the service publishes,
    with its lineage sidecar beside the adapter."""
    rows = rsloRA_rollout(world, tmp_path, portable=True)
    assert rows["svc1"]["preflight"] == "vllm: loads | sglang: loads", rows["svc1"]
    published = tmp_path / "out" / "published" / "svc1"
    assert rows["svc1"]["state"] == "ready" and published.is_dir()
    assert json.loads((published / "adapter_config.json").read_text())["use_rslora"] is False
    assert json.loads((published / "relora_lineage.json").read_text())["rslora_folded"] is True


def test_a_base_other_than_the_lineage_names_is_a_warning(world: TinyWorld, tmp_path: Path) -> None:
    """An output names its new base by content hash; preflight on that base is clean, on another base it warns
    for every engine (none of them checks the base)."""
    out = tmp_path / "out"
    args = ["readapt", "--quiet", "--old-base", str(world.old_base), "--new-base", str(world.new_base), "--adapter",
            str(world.adapter), "--train", str(world.train), "--val", str(world.val), "--out", str(out), "--method",
            "portllm", f"cache_dir={world.root / 'cache'}"]
    assert CliRunner().invoke(main, args).exit_code == 0
    right = CliRunner().invoke(main, ["preflight", str(out), "--base", str(world.new_base)])
    assert right.exit_code == 0 and right.stdout.splitlines() == ["vllm: loads", "sglang: loads", "lorax: loads"]
    wrong = CliRunner().invoke(main, ["preflight", str(out), "--base", str(world.old_base)])
    assert wrong.exit_code == 0, wrong.output
    lines = wrong.stdout.splitlines()
    assert len(lines) == 3 and all("loads, with warnings (base mismatch)" in ln for ln in lines), lines
