"""The remaining classes of fault, each through the real CLI: outputs other programs must read, inputs that are
not files, a damaged run file, a NaN where a number belongs, and a large probe read only as far as it is used."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import write_fleet
from relora.cli import main
from relora.core.retention import BLOCK, probe_text
from test_bad_input import readapt_args, run_cli


def test_outputs_follow_the_umask_so_another_user_can_serve_them(world, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        result = CliRunner().invoke(main, [*readapt_args(world, out), "--method", "portllm"])
        assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for name in ("adapter_model.safetensors", "adapter_config.json", "relora.json", "events.jsonl"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_inputs_that_are_not_files_are_named_for_what_they_are(world, tmp_path: Path) -> None:
    (tmp_path / "probe-dir").mkdir()
    run_cli([*readapt_args(world, tmp_path / "a"), "--update-probe", str(tmp_path / "probe-dir")], 2,
            "update_probe is a directory")
    run_cli(readapt_args(world, tmp_path / "b", val=str(tmp_path / "probe-dir")), 2, "data file is a directory")
    os.mkfifo(tmp_path / "fifo.jsonl")
    run_cli(readapt_args(world, tmp_path / "c", train=str(tmp_path / "fifo.jsonl")), 2, "is not a regular file")
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    run_cli(readapt_args(world, tmp_path / "d", train=str(tmp_path / "loop.jsonl")), 2, "link")


def test_a_report_on_a_cut_short_record_is_one_line(world, tmp_path: Path) -> None:
    fleet = write_fleet(world, tmp_path, n=1, steps=0)
    spec = yaml.safe_load(fleet.read_text())
    spec["defaults"] |= {"method": "portllm", "threshold": "old - 0.45"}
    spec["defaults"]["readapt"] |= {"gate": {"allow_underpowered": True}}
    fleet.write_text(yaml.safe_dump(spec))
    assert CliRunner().invoke(main, ["rollout", str(fleet), "--quiet"]).exit_code == 0
    record = Path(spec["out"]) / "runs" / "svc0" / "relora.json"
    record.write_text(record.read_text()[:200])
    run_cli(["report", spec["out"]], 2, "is damaged")


def test_nan_for_min_retention_is_called_not_a_number(world, tmp_path: Path) -> None:
    fleet = write_fleet(world, tmp_path, n=1)
    spec = yaml.safe_load(fleet.read_text())
    spec["defaults"]["min_retention"] = math.nan
    fleet.write_text(yaml.safe_dump(spec))
    line = run_cli(["rollout", str(fleet)], 2, "finite number")
    assert "less than or equal" not in line


def test_a_large_probe_is_read_only_as_far_as_its_blocks_need(tmp_path: Path) -> None:
    big = tmp_path / "probe.txt"
    big.write_text("word " * 2_000_000)  # 10 MB
    limit = 16 * BLOCK * 16
    assert len(probe_text(big, max_chars=limit)) == limit and len(probe_text(big)) == 10_000_000
    lines = tmp_path / "probe.jsonl"
    lines.write_text("".join('{"text": "%s"}\n' % ("w " * 500) for _ in range(2000)))
    assert 0 < len(probe_text(lines, max_chars=limit)) < 2 * limit


def test_a_looping_train_link_fails_its_own_service_and_the_rest_run(world, tmp_path: Path) -> None:
    fleet = write_fleet(world, tmp_path, n=2, steps=0)
    spec = yaml.safe_load(fleet.read_text())
    spec["defaults"] |= {"method": "portllm", "threshold": "old - 0.45"}
    spec["defaults"]["readapt"] |= {"gate": {"allow_underpowered": True}}
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    spec["adapters"][0]["train"] = str(tmp_path / "loop.jsonl")
    fleet.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["rollout", str(fleet), "--quiet"])
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    from relora.fleet.ledger import Ledger

    rows = {r["name"]: r for r in Ledger(f"sqlite:///{Path(spec['out']) / 'ledger.sqlite3'}").rows()}
    assert rows["svc0"]["state"] == "failed" and "link" in rows["svc0"]["error"]
    assert rows["svc1"]["state"] in ("ready", "below-threshold")


@pytest.mark.parametrize("layout, needle", [
    ({"pytorch_model.bin": b"x", "extra.safetensors": None}, "pytorch_model.bin, which transformers loads"),
    ({"extra.safetensors": None}, "beside the weights transformers loads"),
])
def test_a_base_whose_weight_files_are_ambiguous_is_refused_naming_them(world, tmp_path: Path, layout: dict,
                                                                        needle: str) -> None:
    import shutil

    base = tmp_path / "base"
    shutil.copytree(world.new_base, base)
    weights = base / "model.safetensors"
    for name, content in layout.items():
        if content is None:
            shutil.copy(weights, base / name)
        else:
            (base / name).write_bytes(content)
    if "pytorch_model.bin" in layout:
        weights.unlink()
    line = run_cli(readapt_args(world, tmp_path / "out", **{"new-base": str(base)}), 2, needle)
    assert "extra.safetensors" in line and not list(tmp_path.glob(".*partial"))


def test_a_ray_address_with_no_cluster_stops_in_one_line(world, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    fleet = write_fleet(world, tmp_path, n=1, executor="ray", ray={"address": "127.0.0.1:9"})
    run_cli(["rollout", str(fleet), "--quiet"], 3, "no Ray cluster answers there")


def test_gpus_on_a_machine_without_cuda_are_named_up_front(world, tmp_path: Path, capsys) -> None:
    import torch

    if torch.cuda.device_count():
        pytest.skip("this machine has CUDA")
    from relora.fleet.config import load_fleet
    from relora.fleet.rollout import warn_missing_gpus

    warn_missing_gpus(load_fleet(str(write_fleet(world, tmp_path, n=1, gpus=[0]))))
    assert "names GPUs, but this machine has no CUDA device" in capsys.readouterr().err


def test_a_ledger_url_into_a_missing_directory_is_bad_input_not_a_full_disk(world, tmp_path: Path) -> None:
    fleet = write_fleet(world, tmp_path, n=1, ledger=f"sqlite:///{tmp_path / 'no-such-dir' / 'ledger.sqlite3'}")
    line = run_cli(["rollout", str(fleet), "--quiet"], 2, "the ledger's directory")
    assert "free space" not in line
