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


def test_the_layer_table_has_no_cycle():
    state: dict[str, int] = defaultdict(int)        # 0 new, 1 on the path, 2 done

    def visit(node: str) -> None:
        assert state[node] != 1, f"cycle through {node}"
        if state[node] == 0:
            state[node] = 1
            for dep in LAYERS[node]:
                visit(dep)
            state[node] = 2

    for package in LAYERS:
        visit(package)


def test_no_module_imports_a_script():
    known = modules()
    offenders = [f"{name} imports {target}" for name, path in known.items()
                 for target in imported(path, known) if is_script(target) and target not in TOP]
    assert not offenders, "\n".join(offenders)


def test_scripts_are_thin():
    """A runnable stage is argparse and one library call: roughly a screen, never a second library."""
    for name, path in modules().items():
        if is_script(name) and name not in TOP:
            assert len(path.read_text().splitlines()) <= 160, f"{path} has grown into a library"
