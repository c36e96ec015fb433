#!/usr/bin/env bash
# Build the documentation site into build/docs/ (HTML), from a clean output directory:
#
#     bash scripts/docs.sh
#
# Sphinx with furo and myst-parser (the `docs` extra: pip install -e '.[docs]'). Every
# warning fails the build (-W, after reporting them all: --keep-going), and nitpicky mode (-n)
# makes every unresolved cross-reference a warning. No network is used.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    PYTHON=python3
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    # Sphinx 9 and myst-parser 5 need Python 3.11: on 3.10 the site is not built (said so).
    echo "scripts/docs.sh: SKIPPED: the documentation needs Python >= 3.11 to build" \
        "($("$PYTHON" --version)); run it with a newer Python" >&2
    exit 0
fi
if ! "$PYTHON" -c 'import sphinx, furo, myst_parser, sphinxarg' 2>/dev/null; then
    echo "scripts/docs.sh: the docs dependencies are missing (they need Python >= 3.11):" \
        "$PYTHON -m pip install -e '.[docs]'" >&2
    exit 1
fi

rm -rf build/docs build/docs-doctrees
start=$SECONDS
"$PYTHON" -m sphinx -W --keep-going -n -b html -d build/docs-doctrees docs build/docs
echo "docs: build/docs/index.html ($((SECONDS - start)) s)"
