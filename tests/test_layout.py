"""The package's shape: rooms import only downward, no cycles, the public API's example runs,
and every shipped or documented config parses."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

import relora
from relora.core.config import ReadaptConfig, build_config
from relora.fleet.config import FleetConfig, load_fleet

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "relora"
# What each room may import from relora, besides the shared top-level modules (errors, io, provenance, tables).
# showcase: real fleets built from the bench's real assets (the demo fleet, the fleet race) and rolled out by the fleet
ALLOWED = {"core": {"core"}, "bench": {"core", "bench"}, "fleet": {"core", "fleet"},
           "showcase": {"core", "bench", "fleet", "showcase"}, "cli": {"core", "bench", "fleet", "showcase", "cli"}}
SHARED = {"errors", "io", "provenance", "tables"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def relora_imports(path: Path, top_level_only: bool) -> set[str]:
    """relora modules that a file imports (anywhere, or only at module level)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("relora"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("relora")}
    modules = {module_name(p) for p in SRC.rglob("*.py")}
    return {m for m in found if m in modules} - {module_name(path)}


def test_rooms_import_only_downward() -> None:
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).parts
        room = parts[0] if len(parts) > 1 else None
        for target in relora_imports(path, top_level_only=False):
            target_room = target.split(".")[1] if target.count(".") else None
            if room is None:  # the shared top-level modules import nothing of the rooms' at module level
                assert target_room not in ALLOWED or path.name == "__init__.py", (path, target)
            elif target_room not in SHARED and target != "relora":
                assert target_room in ALLOWED[room], f"{path.relative_to(SRC)} imports {target}"


def test_no_import_cycles() -> None:
    graph = {module_name(p): relora_imports(p, top_level_only=True) for p in SRC.rglob("*.py")}

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            pytest.fail(f"import cycle: {' -> '.join(stack[stack.index(node):] + [node])}")
        if node in done:
            return
        for nxt in graph.get(node, ()):
            visit(nxt, [*stack, node], done)
        done.add(node)

    done: set[str] = set()
    for name in graph:
        visit(name, [], done)


def test_the_public_api_example_runs_on_the_tiny_fixtures(world, tmp_path: Path) -> None:
    """help(relora.readapt) shows an example; run it with the tiny world's paths."""
    doc = relora.readapt.__doc__
    code = doc.split("::", 1)[1].split("``lora-new/``", 1)[0]
    code = "\n".join(line[8:] for line in code.splitlines())
    paths = {"old/": world.old_base, "new/": world.new_base, "lora/": world.adapter, "train.jsonl": world.train,
             "val.jsonl": world.val, "lora-new/": tmp_path / "out"}
    for placeholder, real in paths.items():
        code = code.replace(f'"{placeholder}"', f'"{real}"')
    code = code.replace("readapt(cfg)", "readapt(cfg, progress=False)")
    code = code.replace('search={"trials": 12}', f'search={{"trials": 4, "n_init": 3}}, cache_dir="{world.root / "cache"}"')
    code = code.replace('training={"steps": 60}', 'training={"steps": 4, "eval_every": 2}')
    scope: dict[str, object] = {}
    exec(compile(code, "relora.readapt example", "exec"), scope)  # noqa: S102 - our own docstring
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    from relora.core.methods import DEFAULT_METHOD
    from relora.fleet.config import FleetDefaults

    assert relora.RunRecord.load(tmp_path / "out").method == DEFAULT_METHOD  # the defaults agree with the registry's
    assert ReadaptConfig.model_fields["method"].default == FleetDefaults().method == DEFAULT_METHOD


def test_shipped_examples_validate() -> None:
    cfg = build_config(ReadaptConfig, str(ROOT / "examples" / "readapt.yaml"), ["training.steps=10"], {})
    assert cfg.method == "relora" and cfg.training.steps == 10 and cfg.search.trials == 20
    fleet = load_fleet(str(ROOT / "examples" / "fleet.yaml"))
    assert [fleet.method_of(e) for e in fleet.adapters] == ["relora", "portllm-ft"]
    assert Path(fleet.adapters[0].path).is_absolute()


def test_readme_yaml_blocks_parse_and_validate() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = [b for doc in docs for b in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)]
    assert blocks
    for block in blocks:
        tree = yaml.safe_load(block)
        FleetConfig.model_validate(tree) if "adapters" in tree else ReadaptConfig.model_validate(tree)
