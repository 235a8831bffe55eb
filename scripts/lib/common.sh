# shellcheck shell=bash
# What every kiln script needs: where the checkout is and how to report. Sourced, not run.

# The checkout's root, whatever directory the script was started from.
KILN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

# Progress goes to stderr so that stdout carries only what a caller may capture. Reporting never
# fails: after the terminal closed (SIGHUP) writes fail with EIO, and under `set -e` a failed log
# line would abort the clean-up it announces.
log() { printf 'kiln: %s\n' "$*" >&2 2>/dev/null || true; }
die() {
    printf 'kiln: error: %s\n' "$*" >&2 2>/dev/null || true
    exit 1
}

# Prints a script's header comment (its usage), without the shebang and shellcheck lines.
print_usage() {
    sed -n -e '1,/^[^#]/{/^#!/d;/^# shellcheck/d;/^#/s/^# \{0,1\}//p}' "$1"
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root (the stack installs packages and runs MariaDB as root)"
}

# Configures and builds the tree into $1; further arguments go to the configure step.
# KILN_SKIP_BUILD=1 uses what is already in the build directory (e.g. while iterating on scripts).
build_tree() {
    local build_dir=$1
    shift
    if [[ ${KILN_SKIP_BUILD:-0} == 1 ]]; then
        log "KILN_SKIP_BUILD=1: using $build_dir as it is"
        return 0
    fi
    log "building into ${build_dir#"$KILN_ROOT"/}"
    # Two scripts building one tree at once (e.g. two scripts/test on different ports) would
    # corrupt it: the second waits for the first. fd 8 is closed again when the build is done.
    mkdir -p "$build_dir"
    exec 8>>"$build_dir/.kiln-build.lock"
    flock 8
    # Configure's progress lines are noise; its errors go to stderr and stay visible.
    cmake -S "$KILN_ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null ||
        die "cmake configure failed"
    cmake --build "$build_dir" -j2 || die "build failed"
    exec 8>&-
}
