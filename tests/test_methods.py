"""One shared test every registered method passes, plus the PEFT round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from relora.core.config import ReadaptConfig
from relora.core.methods import METHODS
from relora.core.readapt import readapt

from conftest import fast_config


def _run(world, tmp_path: Path, method: str, **extra) -> tuple[dict, Path]:
    out = tmp_path / method
    return readapt(ReadaptConfig(**fast_config(world, out, method, **extra)), progress=False), out


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_writes_a_complete_run(world, tmp_path: Path, method: str) -> None:
    record, out = _run(world, tmp_path, method, threshold=0.5)
    spec = METHODS[method]
    on_disk = json.loads((out / "relora.json").read_text())
    assert on_disk["method"] == method and on_disk["metrics"] == record["metrics"]
    for key in ("alpha", "beta", "probes", "time_to_ready_s", "steps_to_ready", "search_s", "train_s", "total_s",
                "config", "seed", "hashes", "git_revision", "packages"):
        assert key in on_disk, key
    assert {"new_base", "train", "val", "test"} <= set(on_disk["hashes"])
    assert 0.0 <= record["metrics"]["test_accuracy"] <= 1.0
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["step"] == 0 and events[-1]["step"] == (12 if spec.trains else 0)
    assert all(e2["wall_s"] >= e1["wall_s"] for e1, e2 in zip(events, events[1:]))
    assert set(events[0]) == {"step", "wall_s", "stage", "train_loss", "val_loss", "val_accuracy"}
    assert (out / "adapter_model.safetensors").is_file() == (spec.init != "none")
    if spec.init in ("bo", "grid"):
        explored = [p for p in record["probes"] if p["stage"] == "explore"]
        rescored = [p for p in record["probes"] if p["stage"] == "rescore"]
        if spec.init == "bo":  # screened exploration (EI may stop it early), then 3 re-scores on all of D_val
            assert len(explored) == 6 or (record["search_stopped_early"] and len(explored) > 3)
            assert len(rescored) == 3 and {p["n_examples"] for p in explored} == {record["n_examples"]["val_search"] // 4}
        else:  # the grid baseline: every point on all of D_val
            assert len(explored) == 9 and not rescored
        assert "old_base" in record["hashes"] and "adapter" in record["hashes"]
        best = min(rescored or explored, key=lambda p: p["val_loss"])
        assert (record["alpha"], record["beta"]) == (best["alpha"], best["beta"])
    if spec.trains:
        assert events[-1]["val_loss"] < events[0]["val_loss"]
    ready = [e for e in events if e["val_accuracy"] >= 0.5]
    assert record["steps_to_ready"] == (ready[0]["step"] if ready else None)
    assert not list(tmp_path.glob(".*partial"))


def test_portllm_probe_equals_portllm_method(world, tmp_path: Path) -> None:
    """The search's (0, 1) probe is exactly the PortLLM model: the probe model is the train init."""
    full = fast_config(world, tmp_path, "relora")["search"] | {"screen_fraction": 1.0}
    relora, _ = _run(world, tmp_path, "relora", search=full)
    portllm, _ = _run(world, tmp_path, "portllm")
    first = relora["probes"][0]
    assert (first["alpha"], first["beta"]) == (0.0, 1.0)
    assert first["val_loss"] == pytest.approx(portllm["metrics"]["val_loss"], abs=1e-5)


def test_relora_recovers_from_the_base_update(world, tmp_path: Path) -> None:
    zero, _ = _run(world, tmp_path, "zero-shot")
    relora, _ = _run(world, tmp_path, "relora")
    assert relora["metrics"]["val_accuracy"] > zero["metrics"]["val_accuracy"] + 0.2


def test_saved_adapter_loads_in_peft_with_identical_logits(world, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from relora.core.adapter import attach_lora, read_adapter, set_factors
    from relora.core.models import load_model

    _, out = _run(world, tmp_path, "relora")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(world.new_base)
    assert not config.get("modules_to_save")
    ids = torch.tensor([[1, 5, 9, 12, 20, 7]])
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(world.new_base), str(out)).eval()
    saved = read_adapter(out)
    ours = attach_lora(load_model(world.new_base), saved, seed=0)
    set_factors(ours, saved.factors)
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, ours(input_ids=ids).logits, atol=1e-6)
        base_logits = AutoModelForCausalLM.from_pretrained(world.new_base)(input_ids=ids).logits
    assert not torch.allclose(base_logits, loaded(input_ids=ids).logits, atol=1e-4)


def test_stop_when_ready_stops_at_first_ready_eval(world, tmp_path: Path) -> None:
    record, out = _run(world, tmp_path, "portllm-ft", threshold=0.3, stop_when_ready=True)
    assert record["steps_to_ready"] == 0 and record["steps"] == 0
    assert record["time_to_ready_s"] is not None


def test_same_seed_same_result(world, tmp_path: Path) -> None:
    a, _ = _run(world, tmp_path / "a", "relora", cache_dir=str(tmp_path / "cache-a"))
    b, _ = _run(world, tmp_path / "b", "relora", cache_dir=str(tmp_path / "cache-b"))  # a fresh search
    timing = ("propose_s", "eval_s")
    assert [{k: v for k, v in p.items() if k not in timing} for p in a["probes"]] == \
        [{k: v for k, v in p.items() if k not in timing} for p in b["probes"]]
    assert a["metrics"] == b["metrics"]


def test_relora_no_sreg_reuses_the_relora_search(world, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    relora, _ = _run(world, tmp_path, "relora", cache_dir=cache)
    ablation, _ = _run(world, tmp_path, "relora-no-sreg", cache_dir=cache)
    assert ablation["probes"] == relora["probes"]
    charged = sum(p["propose_s"] + p["eval_s"] for p in relora["probes"])
    assert ablation["search_s"] >= charged and relora["search_s"] >= charged  # probe cost charged to both
    assert ablation["search_wall_s"] < relora["search_wall_s"]


def test_rerun_refuses_existing_out_unless_forced(world, tmp_path: Path) -> None:
    from relora.errors import InputError

    _run(world, tmp_path, "portllm")
    with pytest.raises(InputError, match="already exists"):
        _run(world, tmp_path, "portllm")
    record, _ = _run(world, tmp_path, "portllm", force=True)
    assert record["method"] == "portllm"


def test_shared_base_is_clean_after_a_run(world, tmp_path: Path) -> None:
    from relora.core.models import shared_model

    base = shared_model(world.new_base)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        before = base(input_ids=ids).logits.clone()
    _run(world, tmp_path, "relora")
    assert shared_model(world.new_base) is base
    assert not any("lora" in name for name, _ in base.named_modules())
    with torch.no_grad():
        assert torch.equal(base(input_ids=ids).logits, before)
