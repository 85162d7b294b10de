"""The package's shape: rooms import only downward, no cycles, the public API's example runs,
and every shipped or documented config parses."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import click
import pytest
import yaml

import relora
from relora.core.model.config import ReadaptConfig, build_config
from relora.fleet.config import FleetConfig, load_fleet

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "relora"
# core is four floors, each importing only its own and the floors below it: math (pure tensor functions), model
# (bases, weights, adapters, data, scoring, the delta, the engines' facts), method (the registry, inits, searches,
# the training loop, the record schema) and run (inputs, the recipe, outputs, retention, tracking).
FLOORS = ("math", "model", "method", "run")
# Beside core sit the rooms, each importing core: serve (preflight), fleet (ledger, workers, executors, page) and
# lab (bench, race, perf, demos), which may import fleet. A fleet runs preflight before it publishes, so fleet
# may import serve. The cli is the top and the only importer of lab; the
# package's own __init__ is the public API, which reads core only.
ROOMS = {"serve": {"core", "serve"}, "fleet": {"core", "serve", "fleet"}, "lab": {"core", "serve", "fleet", "lab"},
         "cli": {"core", "serve", "fleet", "lab", "cli"}, "relora": {"core"}}
SHARED = {"errors", "io", "provenance", "tables"}  # top-level modules every room may use; they import no room


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def relora_imports(path: Path, top_level_only: bool, src: Path = SRC) -> set[str]:
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
    return {m for m in found if m in modules} - {module_name(path, src)}


def place(module: str) -> tuple[str, int | None]:
    """(room, floor): ('core', 2) for relora.core.method.train, ('fleet', None) for relora.fleet.ledger."""
    parts = module.split(".")[1:]
    if not parts:
        return "relora", None
    if parts[0] == "core":
        return "core", FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else None
    return parts[0], None


def climbs(module: str, target: str) -> str | None:
    """Why importing target from module breaks the house, or None."""
    (room, floor), (to_room, to_floor) = place(module), place(target)
    if to_room in SHARED:
        return None
    if room in SHARED:
        return f"{module} is shared and imports the room {to_room}"
    if room == "core":
        if floor is None or to_floor is None:
            return f"{module if floor is None else target} is on none of core's floors {FLOORS}"
        return None if to_room == "core" and to_floor <= floor else \
            f"{module} ({FLOORS[floor]}) imports {target} ({to_room if to_room != 'core' else FLOORS[to_floor]})"
    return None if to_room in ROOMS.get(room, set()) else f"{module} ({room}) imports {target} ({to_room})"


def test_core_floors_and_rooms_import_only_downward() -> None:
    """Every import counts, deferred and TYPE_CHECKING ones included, and there is no list of exceptions."""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        assert place(module)[0] in ROOMS | {r: set() for r in SHARED} or place(module)[0] == "core", module
        problems += [why for target in sorted(relora_imports(path, top_level_only=False))
                     if (why := climbs(module, target))]
    assert not problems, "\n".join(problems)


def test_the_floor_check_catches_a_climb_and_a_module_off_the_floors() -> None:
    assert climbs("relora.core.model.loaded", "relora.core.method.train") == \
        "relora.core.model.loaded (model) imports relora.core.method.train (method)"
    assert climbs("relora.core.helpers", "relora.core.math.ops") and climbs("relora.core.run.inputs", "relora.serve.preflight")
    assert climbs("relora.fleet.worker", "relora.lab.race") and climbs("relora.io", "relora.core.math.gate")
    assert climbs("relora.lab.race", "relora.fleet.race") is None
    assert climbs("relora.core.run.readapt", "relora.core.model.config") is None


def test_no_import_cycles() -> None:
    """Every import counts: deferred (inside a function) and TYPE_CHECKING ones too, since a circle held
    open by either is still a circle."""
    graph = {module_name(p): relora_imports(p, top_level_only=False) for p in SRC.rglob("*.py")}

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


def test_the_cycle_check_sees_deferred_and_type_checking_imports(tmp_path: Path) -> None:
    """The check above reads imports inside functions and under TYPE_CHECKING (the old circle hid there)."""
    probe = SRC / "core" / "model" / "config.py"
    code = ast.parse("def f():\n    from relora.core.method.methods import method_named\n"
                     "if TYPE_CHECKING:\n    from relora.core.run.inputs import load_inputs\n")
    copy = tmp_path / "relora" / "core" / "model" / "config.py"
    copy.parent.mkdir(parents=True)
    copy.write_text(probe.read_text() + "\n" + ast.unparse(code) + "\n")
    found = relora_imports(copy, top_level_only=False, src=tmp_path / "relora")
    assert {"relora.core.method.methods", "relora.core.run.inputs"} <= found


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
    from relora.core.method.methods import DEFAULT_METHOD
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


def _relora_commands(text: str) -> list[list[str]]:
    """Every `relora ...` command line in a page's bash blocks (continuations joined, comments dropped)."""
    import shlex

    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r";|&&|\|\|", line.split(" #")[0]):
                words = shlex.split(part, comments=True)
                while words and ("=" in words[0] or words[0] in ("do", "then", "time", "exec")):
                    words = words[1:]  # environment assignments and shell keywords before the command
                if words and (words[0] == "relora" or words[0].endswith("/bin/relora")):
                    found.append(words[1:])
    return found


def test_every_documented_command_names_a_real_subcommand_and_options() -> None:
    """Each `relora` line in README.md and docs/ names a subcommand that exists and only options it takes."""
    from relora.cli import main

    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    commands = [(doc, words) for doc in docs for words in _relora_commands(doc.read_text())]
    assert len(commands) > 10
    for doc, words in commands:
        if not words or words[0].startswith("-"):
            continue  # `relora --help`
        sub = main.commands.get(words[0])
        if isinstance(sub, click.Group) and len(words) > 1 and not words[1].startswith("-"):
            sub, words = sub.commands.get(words[1]), words[1:]  # relora lab bench ...
        assert sub is not None, f"{doc.relative_to(ROOT)}: no subcommand {words[0]!r}"
        options = {o for p in sub.params for o in [*p.opts, *p.secondary_opts]} | {"--help", "-h"}
        for word in words[1:]:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{doc.relative_to(ROOT)}: relora {words[0]} has no {word}"


def test_the_configuration_page_is_generated_from_the_field_descriptions() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))  # the page's generator is development tooling, not the library
    from config_doc import render

    page = (ROOT / "docs" / "configuration.md").read_text()
    assert render(page) == page, "docs/configuration.md is stale: run .venv/bin/python scripts/config_table.py"


def test_the_readme_sets_up_with_two_commands_that_share_one_setup() -> None:
    """The install block is the main job and the tests; each runs scripts/setup.sh first, and CI runs the tests."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Install\n\n```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["./scripts/demo.sh", "./scripts/test.sh"]
    for script in ("demo.sh", "test.sh"):
        lines = (ROOT / "scripts" / script).read_text().splitlines()
        assert "./scripts/setup.sh" in lines, script
    assert "exec ./scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    """After files move (docs/results holds all evidence), no page points at a file that is not there."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_lab_profile_loads_and_its_header_names_the_command_that_runs_it(path: Path) -> None:
    import shlex

    from relora.cli import main
    from relora.lab.profiles import load_profiles
    from relora.lab.race import RaceProfile
    from relora.lab.run import Profile

    profile = load_profiles(path.parent.name, {"bench": Profile, "race": RaceProfile}[path.parent.name])[path.stem]
    assert profile.name == path.stem
    words = shlex.split(path.read_text().splitlines()[0].removeprefix("#"))
    assert words[0] == "relora", path
    group = main  # a lab command, or the main job (`relora demo`), which is a user command
    if words[1] == "lab":
        group, words = main.commands["lab"], words[1:]
    command, args = group.commands[words[1]], words[2:]
    choices = next(p for p in command.params if p.name == "profile").type.choices
    named = words[words.index("--profile") + 1] if "--profile" in words else \
        next(p for p in command.params if p.name == "profile").default
    assert named == path.stem and named in choices
    options = {o for p in command.params for o in p.opts}
    assert all(w in options for w in args if w.startswith("--"))


def test_a_profile_file_that_does_not_fit_is_one_line(tmp_path: Path) -> None:
    from relora.errors import InputError
    from relora.lab.profiles import load_profiles
    from relora.lab.run import Profile

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "mine.yaml").write_text("name: mine\nstepz: 3\n")
    with pytest.raises(InputError, match="mine.yaml: is not a Profile"):
        load_profiles("bench", Profile, root=tmp_path)


def parameter_counts() -> dict[str, int]:
    """Every function in src/ with more than 6 parameters (keyword-only ones included; self and cls not)."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                n = len(names) - (names[:1] in (["self"], ["cls"]))
                if n > 6:
                    found[f"{module_name(path, SRC)}.{node.name}"] = n
    return found


def test_no_function_takes_more_than_six_parameters() -> None:
    assert parameter_counts() == {}, "more than 6 parameters: carry the rest in a keyword-only spec object"


def test_the_parameter_count_sees_keyword_only_parameters_and_skips_self(tmp_path: Path, monkeypatch) -> None:
    """The walk itself: a method with self and 6 more passes, a function with 5 plus 2 keyword-only does not."""
    (tmp_path / "relora").mkdir()
    (tmp_path / "relora" / "m.py").write_text(
        "class C:\n    def ok(self, a, b, c, d, e, f): pass\n"
        "def over(a, b, c, d, e, *, g, h): pass\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "relora")
    assert parameter_counts() == {"relora.m.over": 7}
