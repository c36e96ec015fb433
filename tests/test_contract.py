"""The I/O layers drive the sans-I/O core through its documented contract only.

``websock.asyncio`` (and ``websock.sync``, once it exists) may call the public methods and
read the public attributes of :class:`websock.protocol.connection.Connection` and of the
handshake objects, never their private state: the core is refactored freely behind that
contract. The check is static (``ast``), so it covers code paths no test runs.

What counts as a violation, in a module of an I/O layer:

- Any name private to the core or the handshake module (an attribute or method of one of
  their classes, including ``__slots__`` and attributes assigned on ``self``, or a
  module-level private name) read, written or called on an expression other than bare
  ``self``/``cls`` (``protocol._buf``, ``self.protocol._out``, ``core._OK_CODES``), also
  through ``getattr``/``setattr``/``hasattr``/``delattr`` with a constant name.
- Any private attribute on an expression that names the core or a handshake by the
  conventions of the I/O layers (``x.protocol._anything``, ``x._handshake._anything``,
  ``core._anything``), even a name the core does not define (yet).
- ``from websock.protocol.connection import _private`` (or handshake), relative or not.

An I/O class may well have private attributes of the same name as the core's (``self._buf``):
only accesses on ``self``/``cls`` are exempt, which is what keeps this free of false positives.
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest

import websock
import websock.protocol.connection as core_module
import websock.protocol.handshake as handshake_module

SRC = Path(websock.__file__).resolve().parent
# The I/O layers; a package that does not exist yet contributes no module.
IO_PACKAGES = ("asyncio", "sync", "asgi")
CONTRACT_MODULES: tuple[ModuleType, ...] = (core_module, handshake_module)
# Expressions that hold the core or a handshake in the I/O layers: ``<x>.protocol``,
# ``<x>._handshake`` / ``<x>.handshake``, and the names below (``core`` is the core module).
CORE_ATTRIBUTES = frozenset({"protocol", "_handshake", "handshake"})
CORE_NAMES = frozenset({"core", "handshake"})
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def is_private(name: str) -> bool:
    """One leading underscore (or a mangled ``__name``), but not a dunder."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names(modules: Iterable[ModuleType]) -> frozenset[str]:
    """Every private name the contract modules define: in their classes and at top level."""
    names: set[str] = set()
    for module in modules:
        tree = ast.parse(inspect.getsource(module))
        for node in tree.body:
            # Module level: functions, classes, constants (``_OK_CODES``, ``_drop_tracebacks``).
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for item in ast.walk(cls):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif (
                    isinstance(item, ast.Attribute)
                    and isinstance(item.value, ast.Name)
                    and item.value.id in ("self", "cls")
                ):
                    names.add(item.attr)  # attributes assigned (or read) on self
                elif isinstance(item, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets
                ):
                    names.update(
                        c.value
                        for c in ast.walk(item.value)
                        if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    )
        # What the source walk could miss (names created at class creation): the classes.
        for _, cls_obj in inspect.getmembers(module, inspect.isclass):
            if cls_obj.__module__ == module.__name__:
                names.update(vars(cls_obj))
                names.update(getattr(cls_obj, "__slots__", ()))
    return frozenset(n for n in names if is_private(n))


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _names_core(node: ast.expr) -> bool:
    """Whether ``node`` is how the I/O layers spell the core or a handshake."""
    if isinstance(node, ast.Attribute):
        return node.attr in CORE_ATTRIBUTES
    return isinstance(node, ast.Name) and node.id in CORE_NAMES


def _resolve(module: str | None, level: int, package: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def find_violations(
    source: str, private: frozenset[str], package: str = "websock.asyncio"
) -> list[tuple[int, str]]:
    """(line, description) of each private access to the core or a handshake in ``source``."""
    contract = {m.__name__ for m in CONTRACT_MODULES}
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            base = node.value
            if _is_self(base):
                continue
            if node.attr in private or _names_core(base):
                found.append((node.lineno, f"{ast.unparse(base)}.{node.attr}"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTRIBUTE_FUNCTIONS
            and len(node.args) >= 2
        ):
            target, name = node.args[0], node.args[1]
            if (
                isinstance(name, ast.Constant)
                and isinstance(name.value, str)
                and is_private(name.value)
                and not _is_self(target)
                and (name.value in private or _names_core(target))
            ):
                found.append(
                    (node.lineno, f"{node.func.id}({ast.unparse(target)}, {name.value!r})")
                )
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node.module, node.level, package)
            # ``from ..protocol import connection as core`` is fine: its private names are
            # then caught as ``core._name`` above.
            for alias in node.names:
                if module in contract and is_private(alias.name):
                    found.append((node.lineno, f"from {module} import {alias.name}"))
    return found


def io_modules() -> list[Path]:
    return sorted(p for package in IO_PACKAGES for p in (SRC / package).glob("**/*.py"))


# ---------------------------------------------------------------------- the checker itself

PRIVATE = private_names(CONTRACT_MODULES)

OFFENDING = """
from ..protocol.connection import _OK_CODES
from ..protocol import connection as core


class Layer:
    def run(self) -> None:
        self.protocol._sending_fragmented
        protocol = self.protocol
        protocol._pings_sent.append(b"")
        self._handshake._reader.feed(b"")
        getattr(self.protocol, "_out")
        core._drop_tracebacks(None)
        conn.protocol._a_name_the_core_does_not_define
        p = self.protocol
        p._buf = b""
        handshake._events
"""

CLEAN = """
from ..protocol import connection as core
from ..protocol.connection import DEFAULT_MAX_MESSAGE_SIZE


class Layer:
    _buf = b""

    def run(self) -> None:
        self._buf = b""  # our own attribute, named like the core's
        self._handshake.send_response(response)
        self.protocol.close_expected()
        protocol.terminal_pending
        self.server._connections
        getattr(transport, "_ssl_protocol", None)
        getattr(protocol, "_app_protocol", None)  # an asyncio protocol, not the core
        core.State.OPEN
        cls._events
"""


def test_private_names_cover_the_core_and_the_handshake() -> None:
    # Slots, self attributes, methods and module-level names of both modules.
    for name in (
        "_buf",
        "_sending_fragmented",
        "_pings_sent",
        "_violation",
        "_OK_CODES",
        "_reader",
        "_refused",
        "_accept_extension",
    ):
        assert name in PRIVATE, name
    assert not any(n.startswith("__") and n.endswith("__") for n in PRIVATE)
    assert "terminal_pending" not in PRIVATE and "messages_consumed" not in PRIVATE


def test_checker_flags_each_private_access() -> None:
    found = find_violations(OFFENDING, PRIVATE)
    lines = sorted({line for line, _ in found})
    # Every offending line of the snippet, and nothing else.
    expected = [2] + list(range(8, 18))
    expected.remove(9)  # ``protocol = self.protocol``
    expected.remove(15)  # ``p = self.protocol``
    assert lines == expected, found


def test_checker_accepts_the_contract() -> None:
    assert find_violations(CLEAN, PRIVATE) == []


def test_relative_import_resolution() -> None:
    assert _resolve("protocol.connection", 2, "websock.asyncio") == "websock.protocol.connection"
    assert _resolve(None, 1, "websock.asyncio") == "websock.asyncio"
    assert _resolve("websock.protocol", 0, "websock.asyncio") == "websock.protocol"


# ---------------------------------------------------------------------- the I/O layers


def test_io_layers_exist() -> None:
    # The glob must find the asyncio layer at least, or the next test proves nothing.
    assert SRC / "asyncio" / "connection.py" in io_modules()


@pytest.mark.parametrize("path", io_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_io_layer_uses_only_the_contract(path: Path) -> None:
    package = ".".join(("websock",) + path.relative_to(SRC).parent.parts)
    found = find_violations(path.read_text(encoding="utf-8"), PRIVATE, package)
    assert not found, "\n".join(
        f"{path.relative_to(SRC)}:{line}: {what} (private to the core or handshake)"
        for line, what in found
    )


# ---------------------------------------------------------------------- import weight


@pytest.mark.parametrize(
    "module",
    ["websock", "websock.protocol", "websock.protocol.handshake", "websock.options"],
)
def test_import_loads_no_io(module: str) -> None:
    """The sans-I/O core and Options load neither asyncio nor aiofastnet (a fresh process)."""
    code = textwrap.dedent(
        f"""
        import sys
        import {module}
        loaded = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("asyncio", "aiofastnet", "websock.asyncio")
            or m.startswith("websock.asyncio")
        )
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ), timeout=60)


def test_lazy_asyncio_names_still_work() -> None:
    code = textwrap.dedent(
        """
        import sys
        import websock
        assert "asyncio" not in sys.modules
        from websock.asyncio.server import serve
        assert websock.serve is serve and websock.connect is not None
        assert "asyncio" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ), timeout=60)
