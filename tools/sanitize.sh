#!/usr/bin/env bash
# Runs the test suite against the compiled loop built with AddressSanitizer
# and UndefinedBehaviorSanitizer, so that an out-of-bounds access, a
# use-after-free or undefined behaviour in C fails the run instead of passing
# silently or crashing later somewhere else.
#
#   tools/sanitize.sh [extra pytest arguments]     e.g. tools/sanitize.sh -x -k compiled
#
# Needs only gcc and a Python (given by $PYTHON, default python3) with venv;
# pip fetches the build and test requirements.  Everything happens in a
# temporary directory (SANITIZE_KEEP=1 keeps it): a fresh copy of this
# checkout (tracked and untracked files, no build products), its own virtual
# environment, and a build with pip's cache off, so no non-sanitized wheel or
# build directory is reused and the regular build is left untouched.  The
# tests run in the copy, whose source package is removed after the install:
# they can only import the installed, sanitized build (checked).
#
# Run-time settings:
# - LD_PRELOAD of libasan (and libubsan): the interpreter itself is not
#   instrumented, and ASan's runtime must be loaded before anything else;
# - PYTHONMALLOC=malloc: CPython's arena allocator would hide overflows of
#   small blocks inside its arenas;
# - detect_leaks=0: CPython keeps objects alive until exit by design;
# - allocator_may_return_null=1: a huge allocation (recv(2**62) in the tests)
#   must raise MemoryError, as it does without ASan, not abort the run;
# - every report halts the process that made it (abort_on_error,
#   -fno-sanitize-recover=undefined).  ASan's reports also go to log files,
#   so one from any process (pytest itself, a test's subprocess, a forked
#   child of tests/test_fuzz.py) fails this script; UBSan's, which ignore
#   log_path beside ASan, are found in the tests' output.
# No report comes from CPython or Cython's generated code: nothing is
# suppressed.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
# float-cast-overflow is not part of gcc's "undefined": it catches a NaN or
# huge double cast to an int (a poll timeout, say).
sanitize_flags="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow -fno-omit-frame-pointer -g -O1"

work="$(mktemp -d "${TMPDIR:-/tmp}/aioc-sanitize.XXXXXX")"
cleanup() {
    if [ "${SANITIZE_KEEP:-0}" = 1 ]; then
        echo "sanitize: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

step() { echo "sanitize: $*"; }
die() {
    echo "sanitize: error: $*" >&2
    exit 1
}

command -v gcc >/dev/null || die "gcc is required"
asan_runtime="$(gcc -print-file-name=libasan.so)"
ubsan_runtime="$(gcc -print-file-name=libubsan.so)"
[ -e "$asan_runtime" ] || die "gcc has no AddressSanitizer runtime ($asan_runtime)"
[ -e "$ubsan_runtime" ] || die "gcc has no UndefinedBehaviorSanitizer runtime ($ubsan_runtime)"

copy_checkout() {
    # Tracked and untracked files, as git sees them, minus ignored build
    # products (*.so, the generated _loop_c.c, build/, *.egg-info).
    local dest="$1"
    mkdir -p "$dest"
    if git -C "$here" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (
            cd "$here"
            git ls-files -z --cached --others --exclude-standard |
                while IFS= read -r -d '' path; do
                    [ -e "$path" ] && printf '%s\0' "$path" # skip deletions not yet committed
                done |
                tar --null -T - -cf -
        ) | tar -xf - -C "$dest"
    else
        tar -C "$here" --exclude=.git --exclude=build --exclude='*.egg-info' --exclude='*.so' \
            --exclude=src/aioc/_loop_c.c --exclude='.venv*' -cf - . | tar -xf - -C "$dest"
    fi
}

step "copying $here to $work/checkout"
copy_checkout "$work/checkout"
cd "$work/checkout"

step "creating a virtual environment with $python"
"$python" -m venv "$work/venv"
venv_python="$work/venv/bin/python"

# setup.py appends -O2 after CFLAGS, and gcc obeys the last -O: this wrapper
# puts the sanitizer build's -O1 last.
mkdir -p "$work/bin"
cat >"$work/bin/cc" <<'EOF'
#!/bin/sh
exec gcc "$@" -O1
EOF
chmod +x "$work/bin/cc"

step "building aioc with $sanitize_flags"
CC="$work/bin/cc" CFLAGS="$sanitize_flags" LDFLAGS="-fsanitize=address,undefined" \
    "$venv_python" -m pip install --quiet --no-cache-dir ".[test]" pytest-timeout

# The tests must import the installed, sanitized build: take the source
# tree's package away so that nothing can import it by accident.
rm -rf src/aioc

logs="$work/logs"
mkdir -p "$logs"
asan_options="detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1"
ubsan_options="halt_on_error=1:print_stacktrace=1"

# AddressSanitizer's quarantine keeps freed blocks (256 MiB by default), so a
# process's RSS grows by design: the soak test checks fds and objects exactly
# but RSS only against this bound here.
export AIOC_SOAK_RSS_TOLERANCE_MIB=512

sanitized() {
    # $1: the prefix of the report files; the rest: the command, run with the
    # sanitizer runtimes preloaded (only Python runs with them: other tools
    # would just slow down).
    local prefix="$1"
    shift
    env LD_PRELOAD="$asan_runtime $ubsan_runtime${LD_PRELOAD:+ $LD_PRELOAD}" \
        PYTHONMALLOC=malloc AIOC_REQUIRE_EXTENSIONS=1 PYTHONDONTWRITEBYTECODE=1 \
        ASAN_OPTIONS="$asan_options:log_path=$prefix" UBSAN_OPTIONS="$ubsan_options" "$@"
}

# The setup is live only if a real overflow is caught: write one byte past a
# 16-byte block from PyMem_Malloc (plain malloc under PYTHONMALLOC=malloc).
step "checking that a heap overflow is caught"
if sanitized "$logs/selfcheck" "$venv_python" -c '
import ctypes
ctypes.pythonapi.PyMem_Malloc.restype = ctypes.c_void_p
block = ctypes.pythonapi.PyMem_Malloc(16)
ctypes.memset(block + 16, 0, 1)
' 2>/dev/null; then
    die "a heap overflow went unnoticed: the sanitizer is not active"
fi
grep -qs "ERROR: AddressSanitizer: heap-buffer-overflow" "$logs"/selfcheck.* ||
    die "the overflow check failed without a sanitizer report"
rm -f "$logs"/selfcheck.*

step "checking which aioc the tests import"
# From the folder pytest runs in, with the tests folder on the path as pytest puts it.
extension="$(sanitized "$logs/report" "$venv_python" -c '
import sys
sys.path.insert(0, "tests")
import aioc, aioc._loop_c
assert aioc.IMPLEMENTATION == "compiled", aioc.IMPLEMENTATION
print(aioc._loop_c.__file__)
')"
case "$extension" in
"$work/venv/"*) step "the tests import $extension" ;;
*) die "aioc._loop_c is imported from $extension, not from the sanitized install" ;;
esac
readelf -d "$extension" | grep -q 'NEEDED.*libasan' || die "$extension is not linked with AddressSanitizer"
readelf -d "$extension" | grep -q 'NEEDED.*libubsan' || die "$extension is not linked with UndefinedBehaviorSanitizer"
producer="$(readelf --debug-dump=info "$extension" 2>/dev/null | grep -m1 'DW_AT_producer' || true)"
last_opt="$(grep -o -- ' -O[0-9sgz]*' <<<"$producer" | tail -n1 || true)"
case "$producer" in
*"-fsanitize=address,undefined"*) [ "$last_opt" = " -O1" ] || die "built with$last_opt, not -O1: $producer" ;;
*) die "$extension was not compiled with -fsanitize=address,undefined: $producer" ;;
esac
step "compiled as:${producer#*:}"

step "running the tests"
started=$SECONDS
set +e
sanitized "$logs/report" "$venv_python" -m pytest -q -p no:cacheprovider tests "$@" 2>&1 | tee "$logs/pytest.txt"
status=${PIPESTATUS[0]}
set -e
step "the tests took $((SECONDS - started)) s (exit status $status)"

# UBSan ignores log_path when ASan's runtime is loaded too: its reports go
# to stderr (and, from a forked child, into the failing test's output).
if grep -q ': runtime error: ' "$logs/pytest.txt"; then
    grep -A8 ': runtime error: ' "$logs/pytest.txt" >&2
    die "UndefinedBehaviorSanitizer report(s) above"
fi

reports=("$logs"/report.*)
if [ -e "${reports[0]}" ]; then
    # One full report per kind of error and place (the first two frames),
    # then how often each occurred: a fuzzed test repeats its crash while
    # it shrinks the example.
    declare -A seen=()
    for report in "${reports[@]}"; do
        kind="$(grep -m1 -oE 'ERROR: AddressSanitizer: [a-z-]+' "$report" || echo "unparsed report")"
        place="$(grep -m2 -oE '^ +#[01] 0x[0-9a-f]+ in [^ ]+' "$report" | awk '{print $4}' | paste -sd' ' -)"
        key="$kind at $place"
        if [ -z "${seen[$key]:-}" ]; then
            echo "sanitize: $key ($report):" >&2
            cat "$report" >&2
        fi
        seen[$key]=$((${seen[$key]:-0} + 1))
    done
    echo "sanitize: reports by kind:" >&2
    for key in "${!seen[@]}"; do
        echo "  ${seen[$key]} x $key" >&2
    done
    die "${#reports[@]} sanitizer report(s)"
fi
exit "$status"
