# shellcheck shell=bash
# The CPython versions aioc supports and is tested on, and where to find them;
# sourced by .ci/run and tools/build_release.sh.  pyproject.toml's
# requires-python and classifiers say the same.

SUPPORTED_PYTHONS=(3.10 3.11 3.12 3.13)
PYENV_VERSIONS="${PYENV_ROOT:-/root/.pyenv}/versions"

# python_for MINOR: prints the path of the newest installed CPython MINOR.x
# under PYENV_VERSIONS, or says what is missing and fails.  A missing version
# is an error, never a reason to skip it.
python_for() {
    local minor=$1 dir exe=""
    for dir in "$PYENV_VERSIONS/$minor".*; do
        # Releases only (3.12.1, not 3.12-dev or 3.13.0t); the newest wins.
        if [[ "${dir##*/}" =~ ^${minor//./\\.}\.[0-9]+$ && -x "$dir/bin/python3" ]]; then
            if [ -z "$exe" ] || [ "$(printf '%s\n%s\n' "$exe" "$dir/bin/python3" | sort -V | tail -n 1)" != "$exe" ]; then
                exe="$dir/bin/python3"
            fi
        fi
    done
    if [ -z "$exe" ]; then
        echo "error: CPython $minor is not installed under $PYENV_VERSIONS (needed: ${SUPPORTED_PYTHONS[*]})" >&2
        return 1
    fi
    if ! "$exe" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$minor', sys.version"; then
        echo "error: $exe is not CPython $minor" >&2
        return 1
    fi
    echo "$exe"
}
