"""The protocol core is sans-I/O: no module under websock/protocol (nor websock.exceptions)
imports an I/O, clock or threading module.

Checked statically (every import statement, at any depth, including TYPE_CHECKING blocks)
and dynamically in a fresh interpreter that bypasses ``websock/__init__`` (which imports
the asyncio layer on purpose).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import websock

FORBIDDEN = {"asyncio", "socket", "ssl", "time", "selectors", "threading"}

PACKAGE_DIR = Path(websock.__file__).parent
CORE_FILES = sorted((PACKAGE_DIR / "protocol").rglob("*.py")) + [PACKAGE_DIR / "exceptions.py"]


def core_modules() -> list[str]:
    names = []
    for path in CORE_FILES:
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def imported_top_level(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
            in ("__import__", "import_module")
        ):
            found.add("<dynamic import>")
    return found


def test_core_files_found() -> None:
    names = {p.name for p in CORE_FILES}
    expected = {"connection.py", "frames.py", "close.py", "utf8.py", "handshake.py"}
    assert expected | {"permessage_deflate.py", "base.py", "exceptions.py"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_no_io_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imported = imported_top_level(tree)
    assert not imported & FORBIDDEN, f"{path.name} imports {sorted(imported & FORBIDDEN)}"
    assert "<dynamic import>" not in imported, f"{path.name} imports dynamically"


def test_fresh_interpreter_imports_no_io() -> None:
    # Install a bare ``websock`` package object so that importing the core does not run
    # websock/__init__.py, then import every core module and report what got loaded.
    script = f"""
import json, sys, types
pkg = types.ModuleType("websock")
pkg.__path__ = [{str(PACKAGE_DIR)!r}]
sys.modules["websock"] = pkg
before = set(sys.modules)
import importlib
for name in {core_modules()!r}:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert "websock.protocol.connection" in loaded
    leaked = {name for name in loaded if name.split(".")[0] in FORBIDDEN}
    assert not leaked, f"the protocol core pulled in {sorted(leaked)}"
