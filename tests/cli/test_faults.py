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
from relora.core.run.retention import BLOCK, probe_text
from test_bad_input import readapt_args, run_cli


def test_outputs_follow_the_umask_so_another_user_can_serve_them(world, tmp_path: Path) -> None:
    import shutil
    import subprocess
    import tempfile

    # pytest's own temp root is private (0700): the output goes where any user may walk, as a serving dir would
    shared = Path(tempfile.mkdtemp(prefix="relora-shared-"))
    shared.chmod(0o755)
    old = os.umask(0o022)
    try:
        out = shared / "out"
        result = CliRunner().invoke(main, [*readapt_args(world, out), "--method", "portllm"])
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        names = ("adapter_model.safetensors", "adapter_config.json", "relora.json", "events.jsonl")
        for name in names:
            assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
        if os.geteuid() == 0 and shutil.which("setpriv"):  # root reads anything: read as nobody instead
            for name in names:
                read = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat",
                                       str(out / name)], capture_output=True)
                assert read.returncode == 0 and read.stdout == (out / name).read_bytes(), (name, read.stderr)
    finally:
        os.umask(old)
        shutil.rmtree(shared, ignore_errors=True)


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


def test_gpus_this_machine_lacks_are_refused_up_front_unless_optional(world, tmp_path: Path, capsys) -> None:
    from relora.fleet.config import load_fleet
    from relora.fleet.rollout import check_gpus

    # GPU 99 exists on no machine this suite runs on: refused before the ledger exists, exit 3 (the environment)
    fleet = write_fleet(world, tmp_path, n=1, gpus=[99])
    run_cli(["rollout", str(fleet), "--quiet"], 3, "names GPU(s) [99], but this machine has")
    assert not (tmp_path / "fleet-out" / "ledger.sqlite3").exists() and not list(tmp_path.glob("**/ledger.sqlite3"))
    (tmp_path / "optional").mkdir()
    check_gpus(load_fleet(str(write_fleet(world, tmp_path / "optional", n=1, gpus=[99], gpus_optional=True))))
    assert "the jobs run on the CPU (gpus_optional: true)" in capsys.readouterr().err


def test_a_ledger_url_into_a_missing_directory_is_bad_input_not_a_full_disk(world, tmp_path: Path) -> None:
    fleet = write_fleet(world, tmp_path, n=1, ledger=f"sqlite:///{tmp_path / 'no-such-dir' / 'ledger.sqlite3'}")
    line = run_cli(["rollout", str(fleet), "--quiet"], 2, "the ledger's directory")
    assert "free space" not in line


def _chattr(flag: str, path: Path) -> bool:
    import subprocess

    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_a_ledger_made_immutable_mid_run_stops_in_one_line_and_a_rerun_resumes(world, tmp_path: Path) -> None:
    """The ledger turns unwritable while a job runs (chattr +i, which stops root too): exit 3, one line, no
    traceback; once writable again, a re-run reclaims the row the first run could not finish, and no row
    stays running."""
    import subprocess
    import time

    from helpers import RELORA
    from relora.fleet.ledger import Ledger

    probe = tmp_path / "probe"
    probe.write_text("x")
    if not _chattr("+i", probe):
        pytest.skip("chattr +i is not permitted here")
    _chattr("-i", probe)
    fleet = write_fleet(world, tmp_path, n=2, steps=16, lease_s=3)
    ledger = tmp_path / "out" / "ledger.sqlite3"
    proc = subprocess.Popen([RELORA, "rollout", str(fleet), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if ledger.is_file() and any(r["state"] == "running" for r in Ledger(f"sqlite:///{ledger}").rows()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        assert _chattr("+i", ledger)
        _, err = proc.communicate(timeout=300)
    finally:
        _chattr("-i", ledger)
        if proc.poll() is None:
            proc.kill()
    lines = [ln for ln in err.splitlines() if ln.startswith("relora: ")]
    assert proc.returncode == 3 and "Traceback" not in err and len(lines) == 1, err
    assert str(ledger) in lines[0] and "fix:" in lines[0]
    # the stranded row's process is gone: the re-run on this host releases it at once
    again = subprocess.run([RELORA, "rollout", str(fleet), "--quiet"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert {r["state"] for r in Ledger(f"sqlite:///{ledger}").rows()} <= {"ready", "below-threshold"}


def test_a_new_base_of_another_size_is_blamed_not_the_old_adapter(world, tmp_path: Path) -> None:
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    wider = tmp_path / "wider"
    config = LlamaConfig(vocab_size=LlamaConfig.from_pretrained(world.old_base).vocab_size, hidden_size=96,
                         intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(wider)
    for f in Path(world.old_base).iterdir():  # the same tokenizer
        if "token" in f.name:
            shutil.copy(f, wider / f.name)
    line = run_cli(readapt_args(world, tmp_path / "out", **{"new-base": str(wider)}), 2, "hidden_size 96")
    assert line.startswith(f"relora: error: {wider}") and "old base's 64" in line
