"""Issue #13's cases, each through the real command: the exit code, one line naming the file and the
fix, no input changed, nothing left behind. Full-disk cases use a real tmpfs where root may mount one."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from helpers import TinyWorld, build_tiny_llama, build_tokenizer, _vocab, write_fleet
from relora.cli import main
from relora.core.run.outputs import MARKER


def tree_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for root in paths:
        for f in sorted([root] if root.is_file() else root.rglob("*")):
            if f.is_file():
                digest.update(str(f).encode() + f.read_bytes())
    return digest.hexdigest()


def world_inputs(world: TinyWorld) -> list[Path]:
    return [world.old_base, world.new_base, world.adapter, world.train, world.val, world.test]


def readapt_args(world: TinyWorld, out: Path, **swap: str) -> list[str]:
    given = {"old-base": world.old_base, "new-base": world.new_base, "adapter": world.adapter, "train": world.train,
             "val": world.val, "out": out} | swap
    args = ["readapt", "--quiet", f"cache_dir={world.root / 'cache'}", "--steps", "2", "search.trials=3",
            "search.n_init=3"]
    for flag, value in given.items():
        args += [f"--{flag}", str(value)] if value is not None else []
    return args


def run_cli(args: list[str], code: int, needle: str) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, (result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("relora: ")]
    assert len(lines) == 1 and needle in lines[0] and "fix:" in lines[0], result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def copy_adapter(world: TinyWorld, tmp_path: Path, edit_config: Callable[[dict], object] | None = None,
                 edit_tensors: Callable[[dict], None] | None = None) -> Path:
    path = tmp_path / "adapter"
    shutil.copytree(world.adapter, path)
    if edit_config is not None:
        cfg = json.loads((path / "adapter_config.json").read_text())
        (path / "adapter_config.json").write_text(json.dumps(edit_config(cfg)))
    if edit_tensors is not None:
        tensors = load_file(path / "adapter_model.safetensors")
        edit_tensors(tensors)
        save_file(tensors, path / "adapter_model.safetensors")
    return path


def data_file(tmp_path: Path, rows: list[dict] | bytes, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(rows if isinstance(rows, bytes) else "".join(json.dumps(r) + "\n" for r in rows).encode())
    return path


def nan_first(tensors: dict) -> None:
    key = sorted(tensors)[0]
    tensors[key][0, 0] = float("nan")


def base_with(tmp_path: Path, world: TinyWorld, change: str) -> Path:
    """A copy of the new base with one defect: NaN weights, a cut safetensors file, or another vocabulary."""
    path = tmp_path / f"base-{change}"
    if change == "vocab":
        build_tokenizer(path, extra_words=("newword",))
        build_tiny_llama(path, len(_vocab()) + 1)
        return path
    shutil.copytree(world.new_base, path)
    weights = path / "model.safetensors"
    if change == "nan":
        tensors = load_file(weights)
        nan_first(tensors)
        save_file(tensors, weights, metadata={"format": "pt"})
    else:  # truncated
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return path


def set_key(key: str, value: object) -> Callable[[dict], dict]:
    return lambda cfg: cfg | {key: value}


# name -> (swapped readapt flags built from (world, tmp_path), extra overrides, needle in the one line)
READAPT_CASES: dict[str, tuple[Callable[[TinyWorld, Path], dict], list[str], str]] = {
    "7 DoRA adapter": (lambda w, t: {"adapter": copy_adapter(w, t, set_key("use_dora", True))}, [], "DoRA"),
    "8 empty label": (lambda w, t: {"train": data_file(t, [{"text": "w1 sun", "label": ""}])}, [], "empty label"),
    "9 labels with identical answer tokens": (
        lambda w, t: {"train": data_file(t, [{"text": "w1", "label": "zeta"}, {"text": "w2", "label": "omega"}]),
                      "val": data_file(t, [{"text": "w1", "label": "zeta"}], "val.jsonl")}, [], "same answer tokens"),
    "10 new base with another vocabulary": (lambda w, t: {"new-base": base_with(t, w, "vocab")}, [], "vocabulary"),
    "11 lora_alpha true": (lambda w, t: {"adapter": copy_adapter(w, t, set_key("lora_alpha", True))}, [],
                           "lora_alpha must be a positive number"),
    "12 template without text": (lambda w, t: {}, ["data.template=Answer:"], "no {text} field"),
    "13 NaN in the new base": (lambda w, t: {"new-base": base_with(t, w, "nan")}, [], "NaN"),
    "13 NaN in the adapter": (lambda w, t: {"adapter": copy_adapter(w, t, edit_tensors=nan_first)}, [], "NaN"),
    "14 target_modules matching nothing": (
        lambda w, t: {"adapter": copy_adapter(w, t, set_key("target_modules", ["nope"]))}, [], "do not cover"),
    "14 fresh LoRA targets matching nothing": (lambda w, t: {"adapter": None, "old-base": None},
                                              ["method=scratch", "training.target_modules=[nope]"],
                                              "matches no module"),
    "15 non-UTF-8 data": (lambda w, t: {"train": data_file(t, b'{"text": "w1 \xff", "label": "alpha"}\n')}, [],
                          "not UTF-8"),
    "16 truncated model.safetensors": (lambda w, t: {"new-base": base_with(t, w, "cut")}, [], "unreadable safetensors"),
    "17 lora_alpha a word": (lambda w, t: {"adapter": copy_adapter(w, t, set_key("lora_alpha", "eight"))}, [],
                             "lora_alpha must be a positive number"),
    "17 r a word": (lambda w, t: {"adapter": copy_adapter(w, t, set_key("r", "four"))}, [], "set r to 8"),
    "18 adapter_config.json a list": (lambda w, t: {"adapter": copy_adapter(w, t, lambda cfg: [])}, [],
                                      "is a JSON list"),
    "19 override not YAML": (lambda w, t: {}, ["data.template={txt} Answer:"], "unknown field(s) {txt}"),
    "20 template with an unknown field": (lambda w, t: {}, ['data.template="{txt} Answer:"'], "unknown field"),
    "22 r zero": (lambda w, t: {"adapter": copy_adapter(w, t, set_key("r", 0))}, [], "set r to 8"),
    "22 r negative": (lambda w, t: {"adapter": copy_adapter(w, t, set_key("r", -4))}, [], "set r to 8"),
    "22 rank_pattern": (lambda w, t: {"adapter": copy_adapter(w, t, set_key("rank_pattern", {"q_proj": 4}))}, [],
                        "rank_pattern"),
    "23 NaN adapter under portllm-ft": (lambda w, t: {"adapter": copy_adapter(w, t, edit_tensors=nan_first)},
                                        ["method=portllm-ft"], "NaN"),
}


@pytest.mark.parametrize("case", sorted(READAPT_CASES))
def test_readapt_refuses_in_one_line(world: TinyWorld, tmp_path: Path, case: str) -> None:
    make, overrides, needle = READAPT_CASES[case]
    swap = make(world, tmp_path)
    inputs = [*world_inputs(world), *(Path(p) for p in swap.values() if p is not None)]
    before = tree_hash(*inputs)
    out = tmp_path / "out"
    line = run_cli(readapt_args(world, out, **swap) + overrides, 2, needle)
    assert "diverged" not in line  # the NaN adapter is named as such, not blamed on the data
    assert tree_hash(*inputs) == before
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_3_force_never_deletes_an_output_that_holds_the_inputs(world: TinyWorld, tmp_path: Path) -> None:
    project = tmp_path / "project"
    for src in world_inputs(world):
        (shutil.copytree if src.is_dir() else shutil.copy)(src, project / src.name)
    before = tree_hash(project)
    args = readapt_args(world, project, **{k: project / Path(v).name for k, v in (
        ("old-base", world.old_base), ("new-base", world.new_base), ("adapter", world.adapter),
        ("train", world.train), ("val", world.val))})
    run_cli([*args, "--force"], 2, "contains input")
    assert tree_hash(project) == before


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "x" * 101])
def test_1_2_unsafe_fleet_names_are_refused_before_anything_is_written(world: TinyWorld, tmp_path: Path,
                                                                       name: str) -> None:
    path = write_fleet(world, tmp_path, n=2)
    spec = yaml.safe_load(path.read_text())
    spec["adapters"][0]["name"] = name
    path.write_text(yaml.safe_dump(spec))
    run_cli(["rollout", str(path), "--quiet"], 2, "not a safe directory name")
    assert not (tmp_path / "out").exists()


def test_4_a_fleet_out_that_holds_its_old_adapters_is_refused(world: TinyWorld, tmp_path: Path) -> None:
    """Chaining a second update into the same out: would overwrite the adapters it reads."""
    published = tmp_path / "out" / "published" / "svc0"
    shutil.copytree(world.adapter, published)
    before = tree_hash(tmp_path / "out")
    path = write_fleet(world, tmp_path, n=1)
    spec = yaml.safe_load(path.read_text())
    spec["adapters"][0]["path"] = str(published)
    path.write_text(yaml.safe_dump(spec))
    run_cli(["rollout", str(path), "--quiet"], 2, "contains adapter svc0's path")
    assert tree_hash(tmp_path / "out") == before


@pytest.mark.parametrize("url, needle", [("not a url", "not a database URL"),
                                         ("postgresql+psycopg://relora@127.0.0.1:9/none", "cannot open the ledger")])
def test_21_bad_or_unreachable_ledger_is_one_line(world: TinyWorld, tmp_path: Path, url: str, needle: str) -> None:
    path = write_fleet(world, tmp_path, n=1, ledger=url)
    run_cli(["rollout", str(path), "--quiet"], 2, needle)
    assert not (tmp_path / "out" / "runs").exists()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real tmpfs of a given size at tmp_path/disk, resizable; skipped where mounting is not allowed."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()

    def sized(kib: int) -> Path:
        opts = f"size={kib}k" if not sized.mounted else f"remount,size={kib}k"
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mount)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        sized.mounted = True
        return mount

    sized.mounted = False
    yield sized
    if sized.mounted:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_kib: int) -> None:
    """Fill the disk until about leave_kib KiB are free."""
    stat = shutil.disk_usage(disk)
    (disk / "ballast").write_bytes(b"\0" * max(stat.free - leave_kib * 1024, 0))


@pytest.mark.parametrize("free_kib", [8, 64, 160])
def test_5_a_full_disk_stops_the_rollout_cleanly_and_a_rerun_resumes_at_once(world: TinyWorld, tmp_path: Path,
                                                                             small_disk, free_kib: int) -> None:
    disk = small_disk(4096)
    fill(disk, free_kib)
    path = write_fleet(world, tmp_path, n=2, out=str(disk / "out"), lease_s=900)
    before = tree_hash(*world_inputs(world))
    run_cli(["rollout", str(path), "--quiet"], 3, "cannot write")
    out = disk / "out"
    (disk / "ballast").unlink()
    if (out / "ledger.sqlite3").is_file():  # the stopped job went back to pending itself
        from relora.fleet.ledger import Ledger

        assert "running" not in {r["state"] for r in Ledger(f"sqlite:///{out / 'ledger.sqlite3'}").rows()}
    small_disk(65536)
    result = CliRunner().invoke(main, ["rollout", str(path), "--quiet"])  # no 900 s wait for its own dead rows
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["ready"] == 2
    assert not [p for p in out.rglob(".*") if p.name != MARKER], "a leftover of the stopped attempt survived the re-run"
    assert tree_hash(*world_inputs(world)) == before


def test_6_readapt_on_a_full_disk_is_one_line_and_leaves_nothing(world: TinyWorld, tmp_path: Path, small_disk) -> None:
    disk = small_disk(2048)
    fill(disk, 24)
    out = disk / "out"
    run_cli(readapt_args(world, out), 3, "cannot write")
    assert not out.exists() and not list(disk.glob(".out*"))
