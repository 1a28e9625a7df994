"""Imports flow one way: serve_app -> deployments -> models -> common.

Ray workers import deployments/ by path; if deployments/ reached back into serve_app/ the layers would be
one knot again, so this test parses every module (no import side effects) and names each upward import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level packages it must never import
FORBIDDEN = {
    "common": {"serve_app", "deployments"},
    "models": {"serve_app", "deployments"},
    "deployments": {"serve_app"},
}


def _imported_roots(tree: ast.AST) -> list[tuple[int, str]]:
    """Top-level package of every absolute import, with its line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def upward_imports(package: str, root: Path = ROOT) -> list[str]:
    """'file:line imports X' for each import that breaks the layering of `package`."""
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in _imported_roots(tree):
            if target in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(root)}:{line} imports {target}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package):
    assert (ROOT / package).is_dir(), f"{package}/ is missing"
    assert upward_imports(package) == []


def test_checker_sees_an_upward_import(tmp_path):
    """Guards the guard: a planted upward import (inside a function) is reported with file and line."""
    pkg = tmp_path / "deployments"
    pkg.mkdir()
    (pkg / "bad.py").write_text("import os\n\ndef f():\n    from serve_app.config import get_settings\n")
    assert upward_imports("deployments", tmp_path) == ["deployments/bad.py:4 imports serve_app"]
