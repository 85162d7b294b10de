"""One shared test every registered method passes, and what a run's record promises about itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import fast_config, write_probe
from relora.core.model.config import ReadaptConfig
from relora.core.run.inputs import score_adapter
from relora.core.method.methods import METHODS
from relora.core.run.readapt import readapt
from relora.core.method.record import RunRecord, read_events
from relora.errors import InputError, RolloutStopped
from relora.io import cache_root


def _run(world, tmp_path: Path, method: str, **extra) -> tuple[RunRecord, Path]:
    out = tmp_path / method
    return readapt(ReadaptConfig(**fast_config(world, out, method, **extra)), progress=False), out


def _rescore(world, record: RunRecord, out: Path) -> tuple[float, float]:
    """D_val loss and accuracy of the adapter as saved on disk, scored afresh on the new base."""
    cfg = ReadaptConfig(**record.config)
    method = METHODS[record.method]
    res = score_adapter(str(world.new_base), str(out) if method.has_adapter else None, cfg, record.labels,
                        cache_root(cfg.cache_dir))
    return res.loss, res.accuracy


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_writes_a_complete_run(world, tmp_path: Path, method: str) -> None:
    # a cache of its own: a method's earlier searches on this base pair (other tests', for other adapters)
    # would join its design, and the stages checked below would depend on the order the suite runs in
    spec = METHODS[method]
    # a method that floors its start's retention measures it on an update probe
    probe = {"update_probe": str(write_probe(tmp_path / "probe.txt"))} \
        if spec.init.retention_floor(ReadaptConfig(**fast_config(world, tmp_path, method))) is not None else {}
    record, out = _run(world, tmp_path, method, threshold=0.5, cache_dir=str(tmp_path / "cache"), **probe)
    assert RunRecord.load(out) == record
    # The adapter on disk reproduces the recorded quality when scored from scratch
    loss, accuracy = _rescore(world, record, out)
    assert loss == pytest.approx(record.metrics.val_loss, abs=1e-5) and accuracy == record.metrics.val_accuracy
    assert sum(record.val_correct) / len(record.val_correct) == record.metrics.val_accuracy
    assert {"new_base", "train", "val", "test"} <= set(record.hashes) and record.packages["torch"]
    events = read_events(out)
    assert events[0].step == 0 and events[-1].step == (12 if spec.trains else 0)
    assert all(e2.wall_s >= e1.wall_s for e1, e2 in zip(events, events[1:]))
    assert (out / "adapter_model.safetensors").is_file() == spec.has_adapter
    if spec.search is not None:
        check_search(record, spec.search)
        # The clock starts before the search: readiness at step 0 still pays for it
        assert events[0].wall_s >= record.search_s > 0
    if spec.trains:
        assert events[-1].val_loss < events[0].val_loss
    # without stop_when_ready the gate looks once, at the saved adapter: ready then, or not at all
    (look,) = record.gate.looks if events[-1].val_accuracy >= record.gate.screen_bar else (None,)
    ready = look is not None and look.verdict == "publish"
    assert record.gate.published == ready and record.gate.looks_planned == 1
    assert record.steps_to_ready == (events[-1].step if ready else None)
    assert record.time_to_ready_s == (events[-1].wall_s if ready else None)
    assert not list(tmp_path.glob(".*partial"))


def check_search(record: RunRecord, kind: str) -> None:
    explored = [p for p in record.probes if p.stage == "explore"]
    rescored = [p for p in record.probes if p.stage == "rescore"]
    if kind == "gradient":  # the known points screened, the best re-scored, the learned point judged on D_val
        assert [p.stage for p in record.probes] == ["explore"] * len(explored) + ["rescore", "gradient"]
        start, learned = record.probes[-2:]
        assert (start.alpha, start.beta) == min(((p.val_loss, p.alpha, p.beta) for p in explored))[1:]
        if record.start_replaced:  # a start below its retention floor is replaced by PortLLM's (0, 1)
            assert (record.alpha, record.beta, record.coefficients) == (0.0, 1.0, None)
        else:
            kept = learned if record.coefficients else start
            assert kept.val_loss == min(start.val_loss, learned.val_loss)
            assert (record.alpha, record.beta) == (kept.alpha, kept.beta)
        return
    if kind == "bo":  # screened exploration (EI may stop it early), then 3 re-scores on all of D_val
        # on the tiny fixtures EI stops relora-bo's search after its 3 design points; the others explore all 6
        stops = record.method == "relora-bo"
        assert len(explored) == (3 if stops else 6) and record.search_stopped_early == stops
        assert len(rescored) == 3 and {p.n_examples for p in explored} == {record.n_examples["val_search"] // 4}
    else:  # the grid baseline: every point on all of D_val
        assert len(explored) == 9 and not rescored
    assert "old_base" in record.hashes and "adapter" in record.hashes
    best = min(rescored or explored, key=lambda p: p.val_loss)
    assert (record.alpha, record.beta) == (best.alpha, best.beta)


@pytest.mark.parametrize("method", ["relora", "relora-grid"])
def test_training_starts_from_the_best_probe(world, tmp_path: Path, method: str) -> None:
    """Judged on D_val (data.ready_size 0), step 0 scores the init: it is the best full-D_val probe, bit for bit."""
    record, out = _run(world, tmp_path, method, training={"steps": 0}, data={"ready_size": 0})
    best = min((p for p in record.probes if p.n_examples == record.n_examples["val_search"]), key=lambda p: p.val_loss)
    assert read_events(out)[0].val_loss == pytest.approx(best.val_loss, abs=1e-6)


def test_portllm_probe_equals_portllm_method(world, tmp_path: Path) -> None:
    """The search's (0, 1) probe is exactly the PortLLM model: the probe model is the train init."""
    full = fast_config(world, tmp_path, "relora")["search"] | {"screen_fraction": 1.0}
    relora, _ = _run(world, tmp_path, "relora", search=full, data={"ready_size": 0})
    portllm, _ = _run(world, tmp_path, "portllm", data={"ready_size": 0})  # scored on D_val, as the probe is
    first = relora.probes[0]
    assert (first.alpha, first.beta) == (0.0, 1.0)
    assert first.val_loss == pytest.approx(portllm.metrics.val_loss, abs=1e-5)


def test_relora_recovers_from_the_base_update(world, tmp_path: Path) -> None:
    zero, _ = _run(world, tmp_path, "zero-shot")
    relora, _ = _run(world, tmp_path, "relora")
    assert relora.metrics.val_accuracy > zero.metrics.val_accuracy + 0.2


def test_saved_adapter_loads_in_peft_and_reproduces_the_in_memory_model(world, tmp_path: Path) -> None:
    """PEFT's own loader gives the model readapt trained: same D_val loss as the in-memory model measured."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from relora.core.run.inputs import tokenized_val
    from relora.core.model.models import load_tokenizer
    from relora.core.model.scoring import evaluate

    record, out = _run(world, tmp_path, "relora")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(world.new_base) and not config.get("modules_to_save")
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(world.new_base), str(out)).eval()
    tok = load_tokenizer(world.new_base)
    val = tokenized_val(ReadaptConfig(**record.config), tok, record.labels)
    res = evaluate(loaded, val, tok.pad_token_id)
    assert res.loss == pytest.approx(record.metrics.val_loss, abs=1e-5) and res.correct == record.val_correct
    ids = torch.tensor([[1, 5, 9, 12, 20, 7]])
    with torch.no_grad():
        base_logits = AutoModelForCausalLM.from_pretrained(world.new_base)(input_ids=ids).logits
        assert not torch.allclose(base_logits, loaded(input_ids=ids).logits, atol=1e-4)


def test_stop_when_ready_stops_at_the_first_ready_eval_after_training(world, tmp_path: Path) -> None:
    """A bar step 0 misses and a later checkpoint clears: every checkpoint whose screen passes is looked at on
    the gate set (a counted look), and training stops at the first look that publishes."""
    training = fast_config(world, tmp_path, "scratch")["training"] | {"steps": 40, "lr": 3e-2}
    full, _ = _run(world, tmp_path / "full", "scratch", training=training)
    events = read_events(tmp_path / "full" / "scratch")
    later = [e for e in events if e.step > 0 and e.val_accuracy > events[0].val_accuracy]
    assert later, "scratch never improved on its step-0 accuracy"
    bar = (events[0].val_accuracy + later[0].val_accuracy) / 2  # step 0 is below it, a later screen above
    record, out = _run(world, tmp_path / "stop", "scratch", training=training, threshold=bar, stop_when_ready=True,
                       gate={"allow_underpowered": True, "looks": 6})
    looks, seen = record.gate.looks, read_events(out)
    assert looks and seen[0].val_accuracy < record.gate.screen_bar == bar
    screened = [e.step for e in seen if e.val_accuracy >= bar]
    assert [look.step for look in looks] == screened[: len(looks)]  # every passing screen is a look, in order
    if record.gate.published:
        assert looks[-1].verdict == "publish" and all(look.verdict == "reject" for look in looks[:-1])
        assert record.steps_to_ready == record.steps == seen[-1].step == looks[-1].step < full.steps
    else:
        assert all(look.verdict == "reject" for look in looks) and record.steps_to_ready is None


def test_pinned_numbers_on_the_tiny_fixtures(world, tmp_path: Path) -> None:
    """Seeded runs give these numbers; a change to the loop, the scoring or the init moves them. The default
    method runs from a config that names no method, so a change of default shows here too."""
    scratch, _ = _run(world, tmp_path / "s", "scratch")
    relora, _ = _run(world, tmp_path / "r", "relora", cache_dir=str(tmp_path / "cache"))  # no other test's searches
    unnamed = {k: v for k, v in fast_config(world, tmp_path / "d", "scratch").items() if k != "method"}
    default = readapt(ReadaptConfig(**unnamed), progress=False)
    assert default.method == "portllm-ft"
    got = (scratch.metrics.val_loss, default.metrics.val_loss, relora.metrics.val_loss)
    assert got == pytest.approx(PINNED_VAL_LOSS, rel=1e-3), got


PINNED_VAL_LOSS = (3.94572, 3.53820, 3.52476)  # on D_val, the screen's split (the gate set is the test's)


def test_a_crash_while_saving_leaves_no_output_and_a_rerun_finishes(world, tmp_path: Path, monkeypatch) -> None:
    import relora.core.run.readapt as readapt_mod

    real_save = readapt_mod.save_adapter

    def save_then_crash(model, out_dir: Path, *args: object) -> None:
        real_save(model, out_dir, *args)
        (out_dir / "adapter_model.safetensors").write_bytes(b"half")  # the disk died mid-write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(readapt_mod, "save_adapter", save_then_crash)
    with pytest.raises(RolloutStopped, match="No space left"):
        _run(world, tmp_path, "portllm")
    assert not (tmp_path / "portllm").exists() and not list(tmp_path.glob(".*"))  # nothing half-written is left
    monkeypatch.setattr(readapt_mod, "save_adapter", real_save)
    record, out = _run(world, tmp_path, "portllm")
    assert RunRecord.load(out) == record and not list(tmp_path.glob(".*partial"))


def test_same_seed_same_result(world, tmp_path: Path) -> None:
    a, _ = _run(world, tmp_path / "a", "relora", cache_dir=str(tmp_path / "cache-a"))
    b, _ = _run(world, tmp_path / "b", "relora", cache_dir=str(tmp_path / "cache-b"))  # a fresh search
    timing = ("propose_s", "eval_s")
    assert [p.as_dict() | dict.fromkeys(timing) for p in a.probes] == [p.as_dict() | dict.fromkeys(timing) for p in b.probes]
    assert a.metrics == b.metrics


def test_relora_no_sreg_reuses_the_paper_search(world, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    relora, _ = _run(world, tmp_path, "relora-paper", cache_dir=cache)
    ablation, _ = _run(world, tmp_path, "relora-no-sreg", cache_dir=cache)
    assert ablation.probes == relora.probes
    charged = sum(p.propose_s + p.eval_s for p in relora.probes)
    assert ablation.search_s >= charged and relora.search_s >= charged  # probe cost charged to both
    assert ablation.search_wall_s < relora.search_wall_s


def test_rerun_refuses_existing_out_unless_forced(world, tmp_path: Path) -> None:
    _run(world, tmp_path, "portllm")
    with pytest.raises(InputError, match="already exists"):
        _run(world, tmp_path, "portllm")
    record, _ = _run(world, tmp_path, "portllm", force=True)
    assert record.method == "portllm"


def test_shared_base_is_clean_after_a_run(world, tmp_path: Path) -> None:
    from relora.core.model.models import shared_model

    base = shared_model(world.new_base)
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        before = base(input_ids=ids).logits.clone()
    _run(world, tmp_path, "relora")
    assert shared_model(world.new_base) is base
    assert not any("lora" in name for name, _ in base.named_modules())
    with torch.no_grad():
        assert torch.equal(base(input_ids=ids).logits, before)


def test_record_reads_legacy_correctness_strings(world, tmp_path: Path) -> None:
    """relora.json files written before the typed record stored correctness as a '0101' string."""
    _, out = _run(world, tmp_path, "portllm")
    legacy = json.loads((out / "relora.json").read_text()) | {"val_correct": "0110"}
    assert RunRecord.model_validate(legacy).val_correct == [False, True, True, False]


def test_device_and_dtype_through_the_cli(world, tmp_path: Path) -> None:
    """`--device cpu --dtype D`: the base computes in D, the LoRA factors and their optimizer stay float32,
    and the record says where and how it ran. bfloat16 lands near float32; float32 is today's numbers."""
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from relora.cli import main

    def run(dtype: str) -> tuple[RunRecord, list]:
        out = tmp_path / dtype
        args = ["readapt", "--old-base", str(world.old_base), "--new-base", str(world.new_base), "--adapter",
                str(world.adapter), "--train", str(world.train), "--val", str(world.val), "--out", str(out), "--quiet",
                "--device", "cpu", "--dtype", dtype, "--steps", "8", f"cache_dir={world.root / 'cache'}",
                "search.trials=4", "search.n_init=3", "training.lr=5e-3", "training.eval_every=4",
                "training.batch_size=16", "--method", "relora"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (result.output, result.exception)
        record = RunRecord.load(out)
        assert (record.device, record.dtype, record.config["dtype"]) == ("cpu", dtype, dtype)
        assert {t.dtype for t in load_file(out / "adapter_model.safetensors").values()} == {torch.float32}
        return record, read_events(out)

    fp32, fp32_events = run("float32")
    bf16, bf16_events = run("bfloat16")
    assert bf16_events[-1].val_loss < bf16_events[0].val_loss  # it trains in bfloat16 too
    assert abs(bf16_events[0].val_loss - fp32_events[0].val_loss) < 0.1  # near, not equal: 8 bits of mantissa
    assert abs(bf16_events[0].val_loss - fp32_events[0].val_loss) > 1e-6
    default, _ = _run(world, tmp_path / "auto", "relora", search={"trials": 4, "n_init": 3}, test=None, training={
        "steps": 8, "lr": 5e-3, "eval_every": 4, "batch_size": 16})
    assert default.dtype == "float32" and default.metrics == fp32.metrics  # auto on the CPU is float32


@pytest.mark.parametrize("method", ["portllm-ft", "relora"])
def test_work_units_count_every_example_the_run_scored_and_trained_on(world, tmp_path: Path, method: str) -> None:
    """relora.json's work is cpu_s counted: the search's probes and gradient steps, every D_val screen, the gate's
    looks and the old service's scores (forward only), and every training batch's examples and tokens."""
    from relora.core.method.train import batch_order
    from relora.core.run.inputs import load_inputs

    record, _ = _run(world, tmp_path, method, threshold=0.5, cache_dir=str(tmp_path / "cache"))
    cfg = ReadaptConfig(**record.config)
    train_items = load_inputs(cfg, METHODS[method], cache_root(cfg.cache_dir)).items["train"]
    order = batch_order(len(train_items), 16, record.steps, cfg.seed)
    tokens = sum(len(train_items[i].prompt) + len(train_items[i].answer) for idx in order for i in idx)
    gradient = record.search_train_examples
    assert (gradient > 0) == (record.search_train_tokens > 0) == (method == "relora")  # only relora's search trains
    work, events = record.work, read_events(Path(cfg.out))
    assert work is not None and record.gate is not None and record.gate.examples_scored > 0
    assert work.train_examples == 16 * record.steps + gradient
    assert work.train_tokens == tokens + record.search_train_tokens
    probes = sum(p.n_examples for p in record.probes)
    assert work.examples_scored == probes + len(events) * record.n_examples["val_search"] + record.gate.examples_scored
