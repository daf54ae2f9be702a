"""The layer rules of docs/architecture.md, checked by walking the source (not by importing it).

Every project file is parsed with `ast`; every `import` statement counts wherever it stands — at
module level, inside a function (a lazy import), in a `try` — except under `if TYPE_CHECKING:`,
which never runs. `from pkg import name` is an edge to the module `pkg.name` when there is one, else
to `pkg`; importing `a.b.c` also imports the packages `a` and `a.b` (their `__init__`).

The rules:

- `moeq/contract/` (the torch-free contract) imports only `moeq.contract` and the standard library.
- `moeq/app/` imports `app`, `db`, `jobs` and `contract`; `moeq/db/` imports `db` and `contract`; neither names
  `quant_core` or `kernels`.
- `moeq/jobs/` imports of the numeric core are `moeq.quant_core.api` (the pipeline's one entry point) and
  nothing else of `quant_core` or `kernels`.
- Nothing `moeq/app/`, `moeq/db/` or `moeq/contract/` reaches — directly or transitively, lazy imports included —
  imports torch, transformers or triton. The walk stops at `moeq.quant_core.api`: that is the one door
  through which `jobs` runs torch work on purpose (`moeq run`, the worker, `moeq export`); the door
  itself must stay cheap to import (its module-level imports are torch-free, also checked here).
- No import circles: no project module imports (lazily or not, directly or through others) a
  module that imports it back. Edges to a package's `__init__` implied by importing one of its
  submodules are counted too, so a package `__init__` may not import its own submodules' importers.
- The testbed generator (moeq.quant_core.zoo) never imports evaluation (moeq.quant_core.evaluate), which
  defines the tasks it is scored on.

The one import the walk cannot see is the technique registry's "module:function" names
(moeq/contract/registry.py), which `moeq.quant_core.apply.apply_function` imports inside the numeric core only.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contract", "app", "db", "jobs", "quant_core", "kernels")  # moeq/<name>, imported as moeq.<name>
HEAVY = {"torch", "transformers", "triton"}
DOOR = "moeq.quant_core.api"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@lru_cache(maxsize=1)
def project_modules() -> dict[str, Path]:
    out = {}
    for top in PACKAGES:
        for f in (ROOT / "moeq" / top).rglob("*.py"):
            if "migrations" in f.parts:  # Alembic scripts are loaded by Alembic, not imported
                continue
            out[_module_name(f)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:`; yields (node, lazy) with lazy = inside a def."""
    stack = [(tree, False)]
    while stack:
        node, lazy = stack.pop()
        yield node, lazy
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.If) and _is_type_checking(node) and child in node.body:
                continue
            stack.append((child, lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))))


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def imports_of(module: str) -> tuple[tuple[str, bool], ...]:
    """(imported module name, lazy) for every import statement of `module` (parents included)."""
    mods = project_modules()
    path = mods[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, bool] = {}

    def add(name: str, lazy: bool) -> None:
        for n in _with_parents(name):
            if n != module:
                found[n] = found.get(n, True) and lazy

    for node, lazy in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, lazy)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            add(target, lazy)
            for alias in node.names:
                if f"{target}.{alias.name}" in mods:
                    add(f"{target}.{alias.name}", lazy)
    return tuple(sorted(found.items()))


def top(name: str) -> str:
    """The layer of a project module (`moeq.jobs.submit` → `jobs`); the top name of anything else."""
    parts = name.split(".")
    return parts[1] if parts[0] == "moeq" and len(parts) > 1 else parts[0]


def reach(start: str, stop: set[str] = frozenset(), module_level_only: bool = False) -> dict[str, list[str]]:
    """Everything `start` imports transitively: name → the chain of modules that led there."""
    mods = project_modules()
    seen: dict[str, list[str]] = {start: [start]}
    todo = [start]
    while todo:
        m = todo.pop()
        for name, lazy in imports_of(m):
            if (module_level_only and lazy) or name in seen:
                continue
            seen[name] = [*seen[m], name]
            if name in mods and name not in stop:
                todo.append(name)
    return seen


def _in(module: str, *tops: str) -> bool:
    return top(module) in tops


def test_the_walk_sees_lazy_imports_and_packages():
    found = dict(imports_of("moeq.app.commands.run"))
    assert found.get("moeq.jobs.submit") is True  # imported inside a function
    assert "moeq.jobs" in found and "moeq" in found  # the packages of an imported submodule
    assert found.get("moeq.contract.errors") is False  # at module level


def test_contract_imports_only_itself_and_the_standard_library():
    bad = [(m, name) for m in project_modules() if _in(m, "contract")
           for name, _ in imports_of(m) if top(name) not in ("contract", "moeq") and top(name) not in sys.stdlib_module_names]
    assert not bad, bad


def test_app_and_db_import_only_the_layers_below_them():
    allowed = {"app": {"app", "db", "jobs", "contract"}, "db": {"db", "contract"}}
    bad = [(m, name) for m in project_modules() if _in(m, "app", "db")
           for name, _ in imports_of(m) if top(name) in PACKAGES and top(name) not in allowed[top(m)]]
    assert not bad, bad


def test_jobs_uses_the_numeric_core_only_through_its_entry_point():
    bad = [(m, name) for m in project_modules() if _in(m, "jobs")
           for name, _ in imports_of(m) if top(name) in ("quant_core", "kernels") and name not in ("moeq.quant_core", DOOR)]
    assert not bad, bad


def test_nothing_the_web_app_db_or_contract_reaches_imports_torch():
    offenders = []
    for m in project_modules():
        if _in(m, "app", "db", "contract"):
            for name, chain in reach(m, stop={DOOR}).items():
                if top(name) in HEAVY:
                    offenders.append(" -> ".join(chain))
    for name, chain in reach(DOOR, module_level_only=True).items():
        if top(name) in HEAVY:
            offenders.append(" -> ".join(chain))
    assert not offenders, "\n".join(sorted(offenders)[:20])


def circles() -> list[list[str]]:
    """Strongly connected groups of project modules (each member reaches every other): the circles."""
    mods = project_modules()
    graph = {m: [n for n, _ in imports_of(m) if n in mods] for m in mods}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):  # iterative Tarjan
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph[w])))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    out.append(sorted(group))
    return out


def test_no_import_circles():
    found = circles()
    assert not found, "modules that import each other (directly or through others):\n" + \
        "\n".join(" <-> ".join(g) for g in found)


def test_the_testbed_generator_does_not_import_evaluation():
    """Evaluation task definitions (moeq.quant_core.evaluate.testbed_tasks) use the generator; the
    generator and the zoo builders never import evaluation back."""
    bad = [(m, name) for m in project_modules() if m.startswith("moeq.quant_core.zoo")
           for name, _ in imports_of(m) if name.startswith("moeq.quant_core.evaluate")]
    assert not bad, bad
