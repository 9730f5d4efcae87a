"""The dependency rules of DESIGN.md, checked on the source: no import circle, the trainer and the evaluation
import no task and no reward, no variant is recognised by its name outside its registry, no module imports the
CLI. Modules are read with `ast` (function-level imports included), nothing is imported."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

from rlreason.algos import ADVANTAGES, LOSSES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"rlreason": ROOT / "rlreason", "rlreason.rewards": ROOT / "rewards", "rlreason.tasks": ROOT / "tasks"}
FACADE = "rlreason"  # the package's __init__: the Python API, which imports the top (build, trainer) on use


def _modules() -> Dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            out[".".join([pkg] + (parts[:-1] if parts[-1] == "__init__" else parts))] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """The project module a dotted import name lands in ('' for a third-party one)."""
    while name and name not in MODULES:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def imports_of(name: str) -> Set[str]:
    """Project modules that `name` imports anywhere in its file (top level or inside functions)."""
    path = MODULES[name]
    here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here
            for _ in range(max(0, node.level - 1)):
                base = base.rsplit(".", 1)[0]
            mod = (base + ("." + node.module if node.module else "")) if node.level else node.module
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in map(_resolve, found) if m and m != name}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while comp[-1:] != [v]:
                comp.append(stack.pop())
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    graph = {m: imports_of(m) - {FACADE} for m in MODULES if m != FACADE}
    assert cycles(graph) == []
    assert imports_of(FACADE) <= {"rlreason.build", "rlreason.trainer"}  # the API imports only the top, lazily


def test_trainer_and_evaluation_import_no_task_and_no_reward():
    for name in ("rlreason.trainer", "rlreason.evaluate", "rlreason.update"):
        bad = [m for m in imports_of(name) if m.startswith(("rlreason.tasks", "rlreason.rewards"))]
        assert bad == [], (name, bad)


def test_nothing_imports_the_cli():
    assert [m for m in MODULES if "rlreason.cli" in imports_of(m) and m != "rlreason.__main__"] == []


def test_no_estimator_or_loss_is_recognised_by_name_outside_algos():
    """A comparison or membership test against an estimator or loss name outside rlreason/algos/ would be a
    variant special-cased by name: the traits the entries declare are what the rest reads."""
    names = set(ADVANTAGES.names()) | set(LOSSES.names())
    hits = []
    for mod, path in MODULES.items():
        if mod.startswith("rlreason.algos"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators] for c in ([c] + list(getattr(c, "elts", [])))]
                hit = [c.value for c in consts if isinstance(c, ast.Constant) and c.value in names]
                if hit:
                    hits.append(f"{path.relative_to(ROOT)}:{node.lineno} {hit}")
    assert hits == []


def test_files_and_functions_stay_readable():
    """DESIGN.md: about 350 lines a file, about 60 a function (outside tests and benchmarks)."""
    long_files, long_functions = [], []
    for path in MODULES.values():
        text = path.read_text()
        if text.count("\n") > 360:
            long_files.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 65:
                long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long_files == [] and long_functions == []
