"""The layout is the architecture: dependencies between packages point one way and no script is imported.

Read from the source with `ast` (nothing is imported), so a new import that breaks the layering fails here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.helpers import REPO_ROOT

TOP = ("training", "quality")
# Allowed dependencies between the packages; anything not listed is a layering error.
LAYERS = {
    "training.core": set(),
    "training.data": {"training.core"},
    "quality.features": {"training.core", "training.data"},
    "quality.checks": {"training.core", "training.data", "quality.features"},
    "training.classify": {"training.core", "training.data"},
    "training.gan": {"training.core", "training.data", "quality.features", "quality.checks", "quality.assessment"},
    "training.sgan": {"training.core", "training.data", "training.classify", "training.gan"},
    "training.synthesis": {"training.core", "training.data", "training.classify", "training.gan", "quality.features",
                           "quality.checks"},
    "training.deploy": {"training.core", "training.data", "training.classify", "training.gan"},
    "training.analysis": {"training.core", "training.data", "training.classify"},
    "quality.assessment": {"training.core", "training.data", "quality.features", "quality.checks"},
    "training.study": {"training.core", "training.data", "training.classify", "training.gan", "training.synthesis",
                       "training.analysis", "quality.assessment", "quality.checks"},
}


def modules() -> dict[str, Path]:
    found = {}
    for top in TOP:
        for path in (REPO_ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def is_script(name: str) -> bool:
    """training/*.py and quality/*.py (not packages): the runnable stages."""
    parts = name.split(".")
    return len(parts) == 2 and not (REPO_ROOT / parts[0] / parts[1]).is_dir()


def package_of(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and (REPO_ROOT / parts[0] / parts[1]).is_dir() else name


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules `path` imports (the module itself, or the package of a `from package import name`)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in TOP:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] in TOP}
    return out


def test_every_package_depends_only_on_the_layers_below_it():
    known = modules()
    wrong = []
    for name, path in known.items():
        if is_script(name) or name in TOP:
            continue
        source = package_of(name)
        assert source in LAYERS, f"{name}: package {source} is not in the layer table of this test"
        for target in imported(path, known):
            dest = package_of(target)
            if dest != source and dest not in LAYERS[source]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_modules_import_one_another_without_a_cycle():
    """Read from the imports themselves, module by module (the layer table only bounds packages)."""
    known = modules()
    graph = {name: {t for t in imported(path, known) if t in known and t != name} for name, path in known.items()}
    state: dict[str, int] = defaultdict(int)        # 0 new, 1 on the path, 2 done

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert state[node] != 1, "import cycle: " + " -> ".join((*path, node))
        if state[node] == 0:
            state[node] = 1
            for dep in sorted(graph[node]):
                visit(dep, (*path, node))
            state[node] = 2

    for name in sorted(graph):
        visit(name, ())


def test_no_module_imports_a_script():
    known = modules()
    offenders = [f"{name} imports {target}" for name, path in known.items()
                 for target in imported(path, known) if is_script(target) and target not in TOP]
    assert not offenders, "\n".join(offenders)


def code_lines(path: Path) -> int:
    """Lines of code: not blank, not a comment, not the module docstring."""
    tree = ast.parse(path.read_text())
    doc = tree.body[0].end_lineno if tree.body and isinstance(tree.body[0], ast.Expr) else 0
    return sum(1 for number, line in enumerate(path.read_text().splitlines(), 1)
               if number > doc and line.strip() and not line.strip().startswith("#"))


def test_scripts_are_thin():
    """A runnable stage is argparse and one library call: roughly a screen, never a second library."""
    fat = [f"{path.relative_to(REPO_ROOT)}: {code_lines(path)}" for name, path in sorted(modules().items())
           if is_script(name) and name not in TOP and code_lines(path) > 120]
    assert not fat, "scripts over 120 lines of code (argument handling that grows belongs in the library): " + \
        ", ".join(fat)
