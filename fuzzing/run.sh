#!/usr/bin/env bash
# Run every fuzzing harness one after the other (see fuzzing/README.md).
#
#     bash fuzzing/run.sh                 # short run: 180 s for all harnesses together
#     bash fuzzing/run.sh 1800            # a total budget in seconds, split the same way
#     bash fuzzing/run.sh --long          # 1800 s
#     bash fuzzing/run.sh --only close,inflate 60
#     bash fuzzing/run.sh --corpus-out DIR --long   # keep the new corpus entries in DIR
#     bash fuzzing/run.sh --weights close=40,masking=40 2400   # change shares of the budget
#
# Each harness gets a share of the budget (-max_total_time), -rss_limit_mb=2048 and
# -timeout=25 (per input). New corpus entries and crash files go to a temporary directory,
# never into the repository; a crash input is printed in hex (replay it with
# `python fuzzing/fuzz_NAME.py FILE`). Exit status: 0 when every harness ran clean, 1 if
# any crashed (or failed to start), 2 if atheris is missing and cannot be installed.
#
# Needs atheris (PyPI; the `fuzz` extra of pyproject.toml). Linux x86-64 wheels bundle
# libFuzzer, so `pip install atheris` is enough on CPython 3.11 here; where pip must build it
# from source it needs clang and libFuzzer (Debian: apt-get install clang libclang-rt-dev),
# which this script installs when it runs as root with apt-get.
#
# Environment: PYTHON (default .venv/bin/python, else python3), FUZZ_TRACEMALLOC
# (sample|all|off, see _common.py), FUZZ_MAX_LEN (default 4096), FUZZ_KNOWN_BUGS: the known,
# still open bugs to step over (README.md), by default those of KNOWN_OPEN below; set it
# empty (FUZZ_KNOWN_BUGS= bash fuzzing/run.sh) to enforce every invariant.
set -uo pipefail

# Known bugs still open in src/ (README.md, "Bugs found"): remove a name once it is fixed.
KNOWN_OPEN=""
export FUZZ_KNOWN_BUGS="${FUZZ_KNOWN_BUGS-$KNOWN_OPEN}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
CALLER_PWD="$PWD"
cd "$ROOT"

total=180
only=""
corpus_out=""
weights_override=""
while [ $# -gt 0 ]; do
    case "$1" in
        --long) total=1800 ;;
        --only) only="$2"; shift ;;
        --corpus-out) corpus_out="$2"; shift ;;
        --weights) weights_override="$2"; shift ;;
        -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *[!0-9]*|"") echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
        *) total="$1" ;;
    esac
    shift
done

if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
    # The harnesses run from fuzzing/: a relative path is the caller's.
    case "$PY" in /*) ;; */*) PY="$CALLER_PWD/$PY" ;; esac
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PY="$ROOT/.venv/bin/python"
else
    PY=python3
fi

# websock itself must be importable (scripts/test installs it into .venv).
if ! "$PY" -c 'import websock' 2>/dev/null; then
    echo "run.sh: websock is not importable with $PY: pip install -e . first" >&2
    exit 2
fi

if ! "$PY" -c 'import atheris' 2>/dev/null; then
    echo "=== installing atheris into $("$PY" -c 'import sys; print(sys.prefix)')"
    if ! "$PY" -m pip install --disable-pip-version-check -q 'atheris>=2.3'; then
        # No wheel for this platform/Python: pip builds it, which needs clang + libFuzzer.
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                clang libclang-rt-dev >/dev/null
            CLANG_BIN="$(command -v clang)" "$PY" -m pip install --disable-pip-version-check \
                -q 'atheris>=2.3'
        fi
    fi
    if ! "$PY" -c 'import atheris' 2>/dev/null; then
        echo "run.sh: atheris cannot be installed: it needs a wheel for this Python, or" >&2
        echo "clang and libFuzzer to build one (Debian: apt-get install clang libclang-rt-dev)" >&2
        exit 2
    fi
fi

# name, script, weight (share of the budget), extra environment.
HARNESSES=(
    "connection fuzz_connection.py 30 "
    "connection-pure fuzz_connection.py 12 WEBSOCK_PURE_PYTHON=1"
    "inflate fuzz_inflate.py 16 "
    "http_request fuzz_http_request.py 14 "
    "http_response fuzz_http_response.py 12 "
    "close fuzz_close.py 5 "
    "masking fuzz_masking.py 5 "
)
# Each harness start and stop costs ~5 s (instrumenting websock, loading the seeds): kept
# out of the fuzzing time, so that the whole run takes about the budget.
selected=()
weights=0
for entry in "${HARNESSES[@]}"; do
    read -r name script weight env <<<"$entry"
    if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then
        continue
    fi
    for pair in ${weights_override//,/ }; do
        [ "${pair%%=*}" = "$name" ] && weight="${pair#*=}"
    done
    entry="$name $script $weight $env"
    selected+=("$entry")
    weights=$((weights + weight))
done
if [ ${#selected[@]} -eq 0 ]; then
    echo "run.sh: no harness matches --only $only" >&2
    exit 2
fi
budget=$((total - 5 * ${#selected[@]}))
[ "$budget" -lt ${#selected[@]} ] && budget=${#selected[@]}

work="$(mktemp -d "${TMPDIR:-/tmp}/websock-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
[ -n "$FUZZ_KNOWN_BUGS" ] && echo "=== stepping over known bugs: $FUZZ_KNOWN_BUGS (README.md; FUZZ_KNOWN_BUGS= to enforce)"
echo "=== fuzzing: ${total} s for ${#selected[@]} harnesses; python $("$PY" -c 'import sys; print(sys.version.split()[0])'), atheris $("$PY" -c 'import importlib.metadata as m; print(m.version("atheris"))')"

failed=()
summary=()
start_all=$SECONDS
for entry in "${selected[@]}"; do
    read -r name script weight env <<<"$entry"
    seconds=$((budget * weight / weights))
    [ "$seconds" -lt 1 ] && seconds=1
    corpus_name="${name%-pure}"
    if [ -n "$corpus_out" ]; then
        new_corpus="$corpus_out/$corpus_name"
    else
        new_corpus="$work/corpus/$corpus_name"
    fi
    artifacts="$work/artifacts/$name"
    mkdir -p "$new_corpus" "$artifacts"
    log="$work/$name.log"
    echo
    echo "=== $name: $seconds s ${env:+($env)}"
    # New entries go to the first corpus directory (a temporary one); the seeds are read only.
    (
        cd "$HERE" &&
        env ${env:+"$env"} "$PY" "$script" \
            -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 \
            -max_len="${FUZZ_MAX_LEN:-4096}" -print_final_stats=1 \
            -artifact_prefix="$artifacts/" "$new_corpus" "corpus/$corpus_name"
    ) >"$log" 2>&1
    status=$?
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb))' "$log" | sed 's/^/    /'
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=("$artifacts"/*)
    if [ "$status" -ne 0 ] || [ -e "${crashes[0]}" ]; then
        failed+=("$name")
        echo "!!! $name: exit $status"
        # The Python traceback and libFuzzer's report.
        grep -v -E '^(INFO: Instrumenting|WARNING: Failed to find function|#[0-9]+ )' "$log" | tail -40 | sed 's/^/    /'
        for crash in "${crashes[@]}"; do
            [ -e "$crash" ] || continue
            echo "!!! crash input $(basename "$crash") ($(wc -c <"$crash") bytes), hex:"
            "$PY" -c 'import sys; print(open(sys.argv[1], "rb").read().hex())' "$crash"
        done
        echo "!!! replay: cd fuzzing && ${env:+$env }$PY $script CRASHFILE (the hex above, unhexed)"
    fi
    summary+=("$(printf '%-16s %6s s  %12s executions  exit %s' "$name" "$seconds" "${execs:-?}" "$status")")
done

echo
echo "=== fuzzing summary ($((SECONDS - start_all)) s)"
printf '    %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
    echo "=== fuzzing FAILED: ${failed[*]}"
    exit 1
fi
echo "=== fuzzing passed: no crash"
