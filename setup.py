"""Build the optional C accelerator (websock._speedups); metadata lives in pyproject.toml.

BUILD_EXTENSION=yes requires the build to succeed, no skips it, auto (the default) builds
it when a C compiler is available and falls back to pure Python otherwise.
"""

import os

from setuptools import Extension, setup

build = os.environ.get("BUILD_EXTENSION", "auto").lower()
if build not in ("yes", "no", "auto"):
    raise SystemExit(f"BUILD_EXTENSION must be yes, no or auto, not {build!r}")

ext_modules = []
if build != "no":
    ext_modules.append(
        Extension(
            "websock._speedups",
            sources=["src/websock/_speedups.c"],
            optional=build == "auto",
            extra_compile_args=["-O3"] if os.name != "nt" else [],
        )
    )

setup(ext_modules=ext_modules)
