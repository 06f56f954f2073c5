"""The packages import only what their ``__init__`` docstrings say they may (read from the source, no import).

A new import across a layer fails here, naming the file and the line; widen the table (and the docstring)
only when the architecture really changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "remotemedia_nbrtc"

#: package -> the other parts of remotemedia_nbrtc it may import (top-level modules by their stem)
MAY_IMPORT: dict[str, set[str]] = {
    "protocol": set(),
    "runtime": {"errors"},
    "nodes": {"runtime", "errors"},
    "transport": {"runtime", "protocol", "errors", "lazy_exports"},
    "standalone": {"transport", "runtime", "protocol", "errors", "lazy_exports"},
    "server": {"protocol"},
    "kernel": {"transport", "runtime", "protocol", "errors"},
    "display": {"runtime", "protocol"},
    "widget": set(),
}


def _imported_parts(path: Path) -> list[tuple[int, str]]:
    """(line, first part below remotemedia_nbrtc) of every import of this package in one file."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = module if path.name == "__init__.py" else module[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:  # ``from .. import x``: x may be a module
                    names = [f"{names[0]}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "remotemedia_nbrtc" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_layers_its_docstring_allows(package: str) -> None:
    allowed = MAY_IMPORT[package] | {package}
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports remotemedia_nbrtc.{part}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for line, part in _imported_parts(path)
        if part not in allowed
    ]
    assert not wrong, "\n".join(wrong)


def test_every_package_is_in_the_table_and_says_what_it_may_import() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages - {"testing"} == set(MAY_IMPORT)
    for name in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"{name}/__init__.py does not say what it may import"


def test_nothing_in_the_package_imports_its_test_helpers() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "testing" not in path.relative_to(PACKAGE).parts
        for line, part in _imported_parts(path)
        if part == "testing"
    ]
    assert not wrong, wrong
