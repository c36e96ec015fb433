"""Sphinx configuration of websock's documentation site.

Build it with ``bash scripts/docs.sh`` (``sphinx-build -W --keep-going -n``: every warning,
a broken reference included, fails the build). No network is used at build time: no
intersphinx; standard-library names that cannot be resolved offline are listed in
``nitpick_ignore_regex`` below.

Generated at build time, from the code:

- the API reference (autodoc, from the docstrings and signatures);
- the command line reference (sphinx-argparse, from ``websock.cli._parser()``);
- the close code table (``websock-close-codes``, from ``websock.protocol.close``);
- the exception tree (``websock-exception-tree``, from ``websock.exceptions``);
- the conformance results (``websock-conformance-summary``, from ``compliance/SUMMARY-*.md``);
- the benchmark tables of benchmarks.md (included from ``benchmarks/RESULTS.md``).

The benchmark charts in ``_static/benchmarks/`` are made by ``python benchmarks/plot.py``
from ``benchmarks/RESULTS.md`` and committed.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import websock  # noqa: E402

project = "websock"
author = "websock developers"
copyright = "websock developers"  # noqa: A001
release = websock.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinxarg.ext",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown: heading anchors so that [text](page.md#section) links resolve; `{py:class}`
# roles and ```{directive} blocks come with myst-parser itself.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# Curly quotes and ellipses, but no dashes: "--plain" in help texts stays two hyphens.
smartquotes_action = "qe"

# The asyncio layer is imported lazily by ``websock.__getattr__``; importing it here
# makes the names plain attributes for autodoc.
import websock.asyncio  # noqa: E402,F401

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
# Defaults as values (``max_message_size: int | None = 1048576``), not as the names of the
# constants in the source.
autodoc_preserve_defaults = False
autodoc_class_signature = "mixed"
# Every public name: the members listed in each module's ``__all__``, documented or not.
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "imported-members": True,
    "show-inheritance": True,
}
# None so far: type aliases are shown expanded (``Handler`` as its Callable[...]).
autodoc_type_aliases: dict[str, str] = {}

# The asyncio Protocol callbacks of the connection classes: asyncio's interface, not the
# application's.
_PROTOCOL_CALLBACKS = frozenset(
    {
        "connection_made",
        "connection_lost",
        "data_received",
        "eof_received",
        "get_buffer",
        "buffer_updated",
        "pause_writing",
        "resume_writing",
    }
)


def _top_level_objects() -> set[int]:
    ids = set()
    for name in websock.__all__:
        if name != "__version__":
            ids.add(id(getattr(websock, name)))
    return ids


_TOP_LEVEL = _top_level_objects()


def _skip_member(app, what, name, obj, skip, options):  # type: ignore[no-untyped-def]
    """Document each object once: the top-level names only on the ``websock`` page."""
    if what == "module" and id(obj) in _TOP_LEVEL:
        return True
    if (
        what == "class"
        and name in _PROTOCOL_CALLBACKS
        and getattr(obj, "__module__", "").startswith(("websock.asyncio.", "websock.asgi."))
    ):
        return True
    return None


def _class_as_function_signature(app, what, name, obj, options, signature, return_annotation):  # type: ignore[no-untyped-def]
    """``serve`` and ``connect`` are classes used as functions: show ``__init__``'s
    signature with its annotations evaluated, as for a function."""
    if what != "function" or not inspect.isclass(obj):
        return None
    from sphinx.util.inspect import signature as sphinx_signature
    from sphinx.util.inspect import stringify_signature

    aliases = app.config.autodoc_type_aliases
    sig = sphinx_signature(obj.__init__, bound_method=True, type_aliases=aliases)
    short = app.config.autodoc_typehints_format == "short"
    return stringify_signature(sig, show_return_annotation=False, unqualified_typehints=short), None


html_theme = "furo"
html_title = f"websock {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": True}

nitpicky = True
# Names from the standard library and third-party packages: without intersphinx (no
# network at build time) they cannot be resolved. Of websock's own names, only the private
# sentinel type of "argument not given" defaults is here.
_STDLIB = (
    "abc|asyncio|_asyncio|collections|contextlib|enum|logging|multiprocessing|pathlib|signal"
    "|socket|ssl|uuid"
)
nitpick_ignore_regex = [
    ("py:(class|exc|func|meth|data|obj|attr|mod)", rf"({_STDLIB})(\..+)?"),
    # The event loop's methods, named as in the asyncio documentation (``loop.create_server``).
    ("py:meth", r"loop\..+"),
    ("py:class", r"websock\.options\._Absent"),
    # uvicorn's types in websock.asgi's annotations (imported only for type checking).
    ("py:class", r"uvicorn(\..+)?|Config|ServerState"),
]


# --- Generated tables -------------------------------------------------------------------


def _rst(directive: SphinxDirective, lines: list[str]) -> list[nodes.Node]:
    """Parse reStructuredText lines in the directive's context into nodes (use these
    directives in rst, or in an ``{eval-rst}`` block of a markdown page)."""
    return directive.parse_text_to_nodes("\n".join(lines))


class CloseCodes(SphinxDirective):
    """A table of every :class:`~websock.protocol.close.CloseCode`."""

    def run(self) -> list[nodes.Node]:
        from websock.protocol.close import Close, CloseCode, is_valid_received_code

        self.env.note_dependency(inspect.getfile(CloseCode))
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 8 30 30 12",
            "",
            "   * - code",
            "     - name",
            "     - meaning",
            "     - on the wire",
        ]
        for code in CloseCode:
            meaning = str(Close(code)).partition(" ")[2].strip("()")
            wire = "yes" if is_valid_received_code(code) else "never (local only)"
            lines += [
                f"   * - {int(code)}",
                f"     - :attr:`CloseCode.{code.name} <websock.CloseCode.{code.name}>`",
                f"     - {meaning}",
                f"     - {wire}",
            ]
        for low, high, meaning in (
            (3000, 3999, "registered with IANA (libraries, frameworks)"),
            (4000, 4999, "private use: your application's own codes"),
        ):
            lines += [
                f"   * - {low}-{high}",
                "     - ",
                f"     - {meaning}",
                "     - yes",
            ]
        return _rst(self, lines)


class ExceptionTree(SphinxDirective):
    """The hierarchy of :mod:`websock.exceptions`, as a nested list."""

    def run(self) -> list[nodes.Node]:
        import websock.exceptions as exc_module

        self.env.note_dependency(inspect.getfile(exc_module))
        classes = [getattr(exc_module, name) for name in exc_module.__all__]
        ours = set(classes)
        lines: list[str] = []

        def walk(cls: type, depth: int) -> None:
            bases = [b.__name__ for b in cls.__bases__ if b not in ours and b is not object]
            extra = f" (also {', '.join(f'``{b}``' for b in bases)})" if bases else ""
            summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
            lines.append("  " * depth + f"- :exc:`~websock.{cls.__name__}`{extra}: {summary}")
            lines.append("")
            for sub in classes:
                if cls in sub.__bases__:
                    walk(sub, depth + 1)

        for cls in classes:
            if not any(base in ours for base in cls.__bases__):
                walk(cls, 0)
        return _rst(self, lines)


# --- References by object ---------------------------------------------------------------
#
# Each object is documented once, under one name (``websock.serve``), but docstrings and
# annotations name it as the module they are in sees it (``serve`` in websock.asyncio.server,
# ``Close`` in websock.exceptions, ``ConnectionClosed`` imported into a module). A reference
# Sphinx cannot resolve by name is looked up as Python does, from the module and class it
# appears in; if that gives an object documented under another name, the reference goes
# there. Annotations of names imported only under ``if TYPE_CHECKING:`` fall back to the
# one documented object with that name. Anything else stays a broken reference (nitpicky).

_DOCUMENTED: dict[int, str] | None = None
_KEYED_TYPES = (type, property, classmethod, staticmethod)


def _import(path: str) -> object:
    """The object named by a dotted path, importing the longest module prefix."""
    import importlib

    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(path)


def _keyable(obj: object) -> bool:
    return isinstance(obj, _KEYED_TYPES) or inspect.isroutine(obj)


def _documented(env) -> dict[int, str]:  # type: ignore[no-untyped-def]
    """id(object) -> the name it is documented under, for classes and callables."""
    global _DOCUMENTED
    if _DOCUMENTED is None:
        _DOCUMENTED = {}
        objects = env.get_domain("py").objects
        for fullname, entry in sorted(objects.items(), key=lambda item: item[1].aliased):
            if entry.objtype == "module":
                continue
            try:
                obj = _import(fullname)
            except Exception:
                continue
            if _keyable(obj):
                _DOCUMENTED.setdefault(id(obj), fullname)
    return _DOCUMENTED


def _resolve_by_object(app, env, node, contnode):  # type: ignore[no-untyped-def]
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    target = node["reftarget"].lstrip(".~")
    modname = node.get("py:module")
    clsname = node.get("py:class")
    documented = _documented(env)
    scopes = []
    if modname:
        scopes.append(modname)
        if clsname:
            scopes.insert(0, f"{modname}.{clsname}")
            # The class where it is defined, if documented under another name.
            try:
                cls = _import(f"{modname}.{clsname}")
                scopes.insert(1, f"{cls.__module__}.{cls.__qualname__}")
                scopes.insert(2, cls.__module__)
            except Exception:
                pass
    scopes.append("")
    for scope in scopes:
        path = f"{scope}.{target}" if scope else target
        head, _, attr = path.rpartition(".")
        try:
            obj = _import(path)
        except Exception:
            continue
        name = documented.get(id(obj)) if _keyable(obj) else None
        if name is None and head:
            try:
                owner = _import(head)
            except Exception:
                owner = None
            owner_name = documented.get(id(owner)) if owner is not None else None
            if owner_name and f"{owner_name}.{attr}" in domain.objects:
                name = f"{owner_name}.{attr}"
        if name is not None:
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
            )
    # A name imported only for type checking: the one documented object of that name.
    # Several: the one defined nearest to the reference (websock.asyncio's ``serve`` from
    # websock.asyncio.connection, websock.sync's from websock.sync.connection).
    if "." not in target:
        matches = domain.find_obj(env, "", "", target, node["reftype"], 1)
        by_entry = {}
        for name, entry in matches:
            by_entry.setdefault((entry.docname, entry.node_id), name)
        candidates = list(by_entry.values())
        if len(candidates) > 1 and modname:
            here = modname.split(".")

            def nearness(name: str) -> int:
                try:
                    there = getattr(_import(name), "__module__", "").split(".")
                except Exception:
                    return 0
                common = 0
                for a, b in zip(here, there, strict=False):
                    if a != b:
                        break
                    common += 1
                return common

            best = max(nearness(name) for name in candidates)
            candidates = [name for name in candidates if nearness(name) == best]
        if len(candidates) == 1:
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], candidates[0], node, contnode
            )
    return None


# --- Coverage: every name in a documented module's __all__ is in the reference -----------

# Modules whose public names are documented elsewhere on purpose: ``websock.asyncio``'s are
# documented under ``websock``; ``websock.asgi`` is not in the reference yet (being written).
_COVERAGE_EXEMPT = frozenset({"websock.asyncio"})


def _check_coverage(app, env):  # type: ignore[no-untyped-def]
    import importlib

    from sphinx.util import logging as sphinx_logging

    log = sphinx_logging.getLogger("websock.coverage")
    domain = env.get_domain("py")
    documented = _documented(env)
    modules = {"websock"} | {
        name for name, entry in domain.objects.items() if entry.objtype == "module"
    }
    for modname in sorted(modules - _COVERAGE_EXEMPT):
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", ()):
            if name.startswith("__"):
                continue
            obj = getattr(module, name)
            if f"{modname}.{name}" in domain.objects:
                continue
            if _keyable(obj) and id(obj) in documented:
                continue
            # A value re-exported from another documented module.
            if any(
                f"{other}.{name}" in domain.objects
                and getattr(importlib.import_module(other), name, None) is obj
                for other in modules
            ):
                continue
            log.warning("public name missing from the API reference: %s.%s", modname, name)


# --- Benchmark charts: made from the committed results ----------------------------------


def _check_charts(app, env):  # type: ignore[no-untyped-def]
    """The charts of benchmarks.md must show the numbers of ``benchmarks/RESULTS.md``."""
    import importlib.util

    from sphinx.util import logging as sphinx_logging

    spec = importlib.util.spec_from_file_location("_plot", ROOT / "benchmarks" / "plot.py")
    assert spec is not None and spec.loader is not None
    plot = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = plot  # dataclasses look their module up
    spec.loader.exec_module(plot)
    results = ROOT / "benchmarks" / "RESULTS.md"
    env.note_dependency(str(results))
    digest = plot.fingerprint(results.read_text(encoding="utf-8"))
    source = Path(app.srcdir) / "_static" / "benchmarks" / "SOURCE.txt"
    recorded = source.read_text().split()[0] if source.exists() else None
    if recorded != digest:
        sphinx_logging.getLogger("websock.charts").warning(
            "the benchmark charts do not show the numbers of benchmarks/RESULTS.md: "
            "run python benchmarks/plot.py (and commit docs/_static/benchmarks/)"
        )


class ConformanceSummary(SphinxDirective):
    """One row per ``compliance/SUMMARY-<variant>.md``: when, what, and the verdicts."""

    VARIANTS = (
        "server-ws",
        "server-wss",
        "server-sync-ws",
        "client-ws",
        "client-wss",
        "client-sync-ws",
        "server-asgi-websock-ws",
        # uvicorn's own backend under the same run, for comparison (not websock).
        "server-asgi-websockets-sansio-ws",
    )
    PASSING = {"OK", "INFORMATIONAL"}

    def run(self) -> list[nodes.Node]:
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - variant",
            "     - date (UTC)",
            "     - run time",
            "     - websock",
            "     - cases",
            "     - OK",
            "     - INFORMATIONAL",
            "     - failing",
        ]
        for variant in self.VARIANTS:
            path = ROOT / "compliance" / f"SUMMARY-{variant}.md"
            self.env.note_dependency(str(path))
            text = path.read_text(encoding="utf-8").splitlines()
            facts = [fact.strip() for fact in text[2].split("·")]
            when = facts[0].removesuffix(" UTC")
            version = next((f for f in facts if f.startswith("websock ")), "")
            if not version:  # the ASGI rows: a stand-in command (uvicorn with a backend)
                backend = variant.removeprefix("server-asgi-").removesuffix("-ws")
                version = f"uvicorn + {backend}"
            version = version.removesuffix(" (websock.sync)").removeprefix("websock ")
            run_time = next((f for f in facts if f.startswith("run time")), "")
            run_time = run_time.removeprefix("run time ")
            counts = {"OK": 0, "INFORMATIONAL": 0, "failing": 0}
            for line in text:
                cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
                if len(cells) == 3 and cells[2].isdigit() and not cells[0][:1].isdigit():
                    behavior, close, number = cells[0], cells[1], int(cells[2])
                    if behavior in self.PASSING and close in self.PASSING:
                        key = "OK" if behavior == close == "OK" else "INFORMATIONAL"
                    else:
                        key = "failing"
                    counts[key] += number
            total = sum(counts.values())
            lines += [
                f"   * - ``{variant}``",
                f"     - {when}",
                f"     - {run_time}",
                f"     - {version}",
                f"     - {total}",
                f"     - {counts['OK']}",
                f"     - {counts['INFORMATIONAL']}",
                f"     - {counts['failing']}",
            ]
        return _rst(self, lines)


def setup(app):  # type: ignore[no-untyped-def]
    app.add_directive("websock-close-codes", CloseCodes)
    app.add_directive("websock-exception-tree", ExceptionTree)
    app.add_directive("websock-conformance-summary", ConformanceSummary)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-signature", _class_as_function_signature)
    app.connect("missing-reference", _resolve_by_object)
    app.connect("env-check-consistency", _check_coverage)
    app.connect("env-check-consistency", _check_charts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
