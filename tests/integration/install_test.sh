#!/usr/bin/env bash
# `cmake --install` into a staging root: every file a production host needs lands where the
# systemd units, the config's defaults and kilnctl look for it (docs/operations.md).
#
#   tests/integration/install_test.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: install_test.sh BUILD_DIR}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR=$stage cmake --install "$build" --prefix /usr >/dev/null

failures=0
expect_file() {
    if [[ -f $stage$1 ]]; then echo "ok: $1"; else
        echo "FAILED: $1 is not installed"
        failures=$((failures + 1))
    fi
}

# What the units start, with the paths they start it by.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
for unit in "$root"/fcgi/*.service "$root"/worker/*.service "$root"/ctl/*.service \
    "$root"/fcgi/*.socket "$root"/ctl/*.timer; do
    expect_file "/usr/lib/systemd/system/$(basename "$unit")"
    exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
    [[ -n $exec_start ]] && expect_file "$exec_start"
done
expect_file /usr/sbin/kiln-status
expect_file /usr/sbin/kiln-worker-ctl
# [converters] dirs' default, and kilnctl migrate's.
for f in "$root"/converters/*.toml; do expect_file "/usr/share/kiln/converters/$(basename "$f")"; done
for f in "$root"/sql/*.sql; do expect_file "/usr/share/kiln/sql/$(basename "$f")"; done
if "$stage/usr/bin/kilnctl" migrate --help | grep -q '/usr/share/kiln/sql'; then
    echo "ok: kilnctl migrate reads /usr/share/kiln/sql by default"
else
    echo "FAILED: kilnctl migrate's default is not /usr/share/kiln/sql:"
    "$stage/usr/bin/kilnctl" migrate --help | grep -- --migrations
    failures=$((failures + 1))
fi
# The nginx site's template and the static root it names.
expect_file /usr/share/kiln/nginx/kiln.conf
expect_file /usr/share/kiln/nginx/kiln-locations.conf.in
expect_file /usr/share/kiln/static/index.html
expect_file /usr/share/doc/kiln/kiln.toml.example

if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
