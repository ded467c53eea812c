"""The library's layers: no module imports ``__main__`` or a module of a layer above its own.

Top to bottom: the command line; sweep, tables and course; train and evaluate; pgd, augmax and augmix; ops,
norm, losses, models, data and corruptions (with the private helpers and the poster's numbers). Checked on the
source (every ``import`` and ``from ... import`` statement, at any depth), not on what happens to be loaded.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "augmax_lib"
LAYERS = {
    "cli": 4, "__main__": 4,
    "sweep": 3, "tables": 3, "course": 3,
    "train": 2, "evaluate": 2,
    "pgd_attack": 1, "augmax": 1, "augmix": 1,
    "ops": 0, "norm": 0, "losses": 0, "models": 0, "data": 0, "corruptions": 0, "paper_numbers": 0,
    "_checks": 0, "_io": 0, "_device": 0, "_progress": 0, "_malloc": 0, "__init__": 0,
}
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    """The top-level part of the package a file belongs to (its subpackage, or its own module name)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import of augmax_lib in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = ["augmax_lib", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("augmax_lib")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("augmax_lib"):
                if name == "augmax_lib":  # from augmax_lib import x: x is the part
                    found += [(node.lineno, f"augmax_lib.{alias.name}") for alias in node.names]
                else:
                    found.append((node.lineno, name))
    return found


def test_every_part_has_a_layer():
    assert {_part(p) for p in MODULES} <= set(LAYERS), {_part(p) for p in MODULES} - set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_import_of_main_or_of_a_layer_above(path):
    mine = LAYERS[_part(path)]
    bad = []
    for line, name in _imports(path):
        parts = name.split(".")
        if "__main__" in parts and _part(path) != "__main__":
            bad.append(f"line {line}: imports {name}")
            continue
        target = parts[1] if len(parts) > 1 else "__init__"
        if LAYERS.get(target, 0) > mine:
            bad.append(f"line {line}: imports {name} (layer {LAYERS[target]} above {mine})")
    assert not bad, bad
