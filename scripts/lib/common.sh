# shellcheck shell=bash
# What every kiln script needs: where the checkout is and how to report. Sourced, not run.

# The checkout's root, whatever directory the script was started from.
KILN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

# Progress goes to stderr so that stdout carries only what a caller may capture.
log() { printf 'kiln: %s\n' "$*" >&2; }
die() {
    printf 'kiln: error: %s\n' "$*" >&2
    exit 1
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
    cmake -S "$KILN_ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null ||
        die "cmake configure failed"
    cmake --build "$build_dir" -j2 || die "build failed"
}
