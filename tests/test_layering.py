"""The layers of rft, enforced: an AST check of every import under rft/ and graders/.

A module may import its own subpackage and subpackages of a lower rank, never one of the
same or a higher rank; imports inside functions count, ``if TYPE_CHECKING:`` imports do
not (they never run). Only ``rft/scoring/ray.py`` and ``rft/cluster/`` import ``ray``;
the built-in graders import only what a third-party plugin would; ``import rft`` stays
free of torch, ray, trl and transformers. Every module must belong to a ranked unit, so
new code has to be placed in the table below (and in docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Lowest first. A unit is a subpackage (or a top-level module of rft).
RANKS: dict[str, int] = {
    "rft.core": 0,  # Sample, Outcome, Grade, Grader, GraderSet, errors, formula, parsing, templates, text
    "rft.plugins": 1,  # hookspecs, the plugin manager, grader sets from configs
    "rft.config": 2,
    "rft.data": 2,
    "rft.models": 2,
    "rft.sandbox": 2,
    "rft.scoring": 3,
    "rft.train": 4,
    "rft.judges": 4,
    "rft.advise": 5,
    "rft.cluster": 5,
    "rft.view": 5,  # `rft view`'s server and page; below rft.cli, which serves it
    "rft.cli": 6,
    "rft.testing": 6,
    "rft": 6,  # rft/__init__.py: the public API
    "rft.__main__": 7,  # `python -m rft` runs the CLI, so it sits just above it
}

#: What rft/__init__.py may import: the public API is core and plugins only, which is
#: also why the built-in graders may ``import rft`` like any third-party plugin.
PUBLIC_API_IMPORTS = ("rft.core", "rft.plugins")
#: What the built-in graders (top-level package ``graders``) may import from rft: the
#: public API (``import rft``, exactly) and these subpackages or modules.
GRADERS_MAY_IMPORT = ("rft.core", "rft.plugins", "rft.sandbox", "rft.judges.client")
#: The only places that may import ray.
RAY_ALLOWED = ("rft.scoring.ray", "rft.cluster")
#: Must not be loaded by ``import rft``.
HEAVY = ("torch", "ray", "trl", "transformers")


@dataclass(frozen=True)
class Violation:
    """One broken rule: where, which rule and what to do."""

    rule: str  # "unranked", "upward", "cycle", "ray", "graders", "public-api"
    where: str  # "path:line"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


# ---------------------------------------------------------------------------
# the checker
# ---------------------------------------------------------------------------


def module_name(root: Path, path: Path) -> str:
    """``rft/core/text.py`` → ``rft.core.text``; ``rft/core/__init__.py`` → ``rft.core``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str | None:
    """The ranked unit a module belongs to (the longest matching prefix), or None."""
    if module == "rft":
        return "rft"
    best = None
    for unit in RANKS:
        if unit != "rft" and (module == unit or module.startswith(unit + ".")):
            if best is None or len(unit) > len(best):
                best = unit
    return best


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(tree: ast.Module, module: str, is_package: bool, root: Path) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import that runs, at any depth.

    ``from pkg import name`` yields ``pkg.name`` when that is a module of the tree, else ``pkg``.
    """

    def visit(node: ast.AST) -> Iterator[tuple[str, int]]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                as_path = root.joinpath(*sub.split("."))
                yield (sub if as_path.with_suffix(".py").is_file() or as_path.is_dir() else target), node.lineno
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


def _find_cycles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def check_layering(root: Path) -> list[Violation]:
    """Every layering violation in ``root/rft`` and ``root/graders``, in file order."""
    found: list[Violation] = []
    edges: dict[str, dict[str, str]] = {}  # unit -> imported unit -> first "path:line"
    files = sorted((root / "rft").rglob("*.py")) + sorted((root / "graders").rglob("*.py"))
    for path in files:
        rel = path.relative_to(root).as_posix()
        module = module_name(root, path)
        tree = ast.parse(path.read_text(), filename=rel)
        in_graders = module == "graders" or module.startswith("graders.")
        unit = "graders" if in_graders else unit_of(module)
        if unit is None:
            found.append(
                Violation(
                    "unranked",
                    f"{rel}:1",
                    f"module {module} belongs to no ranked subpackage; add it to RANKS in tests/test_layering.py "
                    "(and to docs/ARCHITECTURE.md) or move it into one",
                )
            )
            continue
        for target, line in imports_of(tree, module, path.name == "__init__.py", root):
            where = f"{rel}:{line}"
            top = target.split(".")[0]
            if top == "ray" and not _within(module, RAY_ALLOWED):
                found.append(
                    Violation(
                        "ray",
                        where,
                        f"{module} imports {target}; only rft/scoring/ray.py and rft/cluster/ may import ray",
                    )
                )
            if top != "rft":
                continue
            if in_graders:
                if target != "rft" and not _within(target, GRADERS_MAY_IMPORT):
                    found.append(
                        Violation(
                            "graders",
                            where,
                            f"{module} imports {target}; the built-in graders may import only "
                            f"rft, {', '.join(GRADERS_MAY_IMPORT)} (what a third-party plugin would)",
                        )
                    )
                continue
            target_unit = unit_of(target)
            if target_unit is None:
                found.append(Violation("unranked", where, f"{module} imports {target}, which has no rank"))
                continue
            if module == "rft" and not _within(target, PUBLIC_API_IMPORTS):
                found.append(
                    Violation(
                        "public-api",
                        where,
                        f"rft/__init__.py imports {target}; the public API re-exports only "
                        f"{' and '.join(PUBLIC_API_IMPORTS)} (graders rely on `import rft` being just that)",
                    )
                )
            if target_unit == unit:
                continue
            edges.setdefault(unit, {}).setdefault(target_unit, where)
            if RANKS[target_unit] >= RANKS[unit] and module != "rft":
                found.append(
                    Violation(
                        "upward",
                        where,
                        f"{module} (layer {unit}, rank {RANKS[unit]}) imports {target} "
                        f"(layer {target_unit}, rank {RANKS[target_unit]}); a layer imports only itself and "
                        "lower ranks: move the shared code down or invert the dependency",
                    )
                )
    for cycle in _find_cycles(edges):
        links = [(a, b, edges[a][b]) for a in cycle for b in cycle if b in edges.get(a, {})]
        text = "; ".join(f"{a} -> {b} at {where}" for a, b, where in links)
        found.append(Violation("cycle", links[0][2], f"import cycle between {', '.join(cycle)}: {text}"))
    return found


# ---------------------------------------------------------------------------
# the repository
# ---------------------------------------------------------------------------

_VIOLATIONS = check_layering(ROOT)


def _report(rule: str) -> list[str]:
    return [str(v) for v in _VIOLATIONS if v.rule == rule]


@pytest.mark.parametrize(
    "rule",
    ["unranked", "upward", "cycle", "ray", "graders", "public-api"],
)
def test_the_repository_keeps_its_layers(rule):
    bad = _report(rule)
    assert not bad, f"{len(bad)} layering violation(s) ({rule}):\n" + "\n".join(bad)


def test_import_rft_loads_none_of_the_heavy_libraries():
    code = f"import sys, rft; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"`import rft` loaded {out.stdout.strip()}"


# ---------------------------------------------------------------------------
# the checker catches what it should (so the repository test cannot pass vacuously)
# ---------------------------------------------------------------------------

PLANTED = {
    "rft/__init__.py": "from rft.core import thing\nfrom rft.plugins import hook\n",
    "rft/core/__init__.py": "",
    "rft/core/ok.py": "from . import sibling\nimport json\n",
    "rft/core/sibling.py": "",
    "rft/core/bad.py": "def f():\n    from rft.train import loop  # inside a function still counts\n",
    "rft/core/typing_only.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rft.cli import app\n"),
    "rft/plugins/__init__.py": "from ..core import ok\n",
    "rft/config/__init__.py": "from rft.data import rows\n",
    "rft/data/__init__.py": "",
    "rft/data/rows.py": "import rft.config\nimport ray\n",
    "rft/train/__init__.py": "",
    "rft/scoring/__init__.py": "",
    "rft/scoring/ray.py": "import ray\n",
    "rft/cluster/__init__.py": "import ray.train\n",
    "rft/cli/__init__.py": "",
    "rft/gadgets/__init__.py": "",
    "graders/__init__.py": "",
    "graders/good.py": "import rft\nfrom rft.core import Grade\nfrom rft.judges.client import get_endpoint\n",
    "graders/greedy.py": "from rft.train import grpo\nfrom rft.judges import server\nimport rft.judges\n",
}


@pytest.fixture
def planted(tmp_path: Path) -> list[Violation]:
    for rel, text in PLANTED.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return check_layering(tmp_path)


def test_the_checker_finds_each_planted_violation_with_file_and_line(planted):
    found = {(v.rule, v.where) for v in planted}
    expected = {
        ("upward", "rft/core/bad.py:2"),  # core imports train, inside a function
        ("upward", "rft/config/__init__.py:1"),  # same rank (config -> data)
        ("upward", "rft/data/rows.py:1"),  # same rank (data -> config)
        ("ray", "rft/data/rows.py:2"),  # ray outside scoring/ray.py and cluster/
        ("unranked", "rft/gadgets/__init__.py:1"),  # a subpackage nobody placed
        ("graders", "graders/greedy.py:1"),  # graders may not import training
        ("graders", "graders/greedy.py:2"),  # ... nor the judge server (only rft.judges.client)
        ("graders", "graders/greedy.py:3"),  # ... nor the judges package as a whole
    }
    assert expected <= found, sorted(found)
    cycles = [v for v in planted if v.rule == "cycle"]
    assert len(cycles) == 1 and "rft.config" in cycles[0].message and "rft.data" in cycles[0].message


def test_the_checker_accepts_what_is_allowed(planted):
    wheres = {v.where.split(":")[0] for v in planted}
    # relative imports inside a layer, TYPE_CHECKING imports, ray where it belongs, the public API,
    # and graders importing rft, rft.core and rft.judges.client
    for ok in ("rft/core/ok.py", "rft/core/typing_only.py", "rft/plugins/__init__.py", "rft/scoring/ray.py"):
        assert ok not in wheres
    assert "rft/cluster/__init__.py" not in wheres and "rft/__init__.py" not in wheres
    assert "graders/good.py" not in wheres


def test_the_public_api_may_not_grow_beyond_core_and_plugins(tmp_path):
    (tmp_path / "rft").mkdir()
    (tmp_path / "rft/__init__.py").write_text("from rft.train import pipeline\n")
    (tmp_path / "rft/train").mkdir()
    (tmp_path / "rft/train/__init__.py").write_text("")
    assert [(v.rule, v.where) for v in check_layering(tmp_path)] == [("public-api", "rft/__init__.py:1")]
