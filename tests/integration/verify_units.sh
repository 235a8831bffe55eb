#!/usr/bin/env bash
# Checks every systemd unit file of kiln (fcgi/, worker/, ctl/: *.service, *.socket, *.timer) with
# `systemd-analyze verify`, the way systemd would load them, without running them.
#
# The binaries that Exec*= lines name are not installed on a build machine, and verify fails on
# a missing executable; so the units are checked from copies whose missing executables point at
# stubs in a temp dir. Everything else (unknown keys, bad values, dependencies on units that do
# not exist) is reported by systemd-analyze as text, often with exit status 0: any output fails.
# --recursive-errors=one: the units' own dependencies count, problems deeper down in the
# machine's units do not. A template (NAME@.service) is checked through an instance: given the
# template itself, systemd-analyze verify says nothing, whatever is wrong in it.
# Then each service's sandbox with `systemd-analyze security --offline`.
# Exit status: 0 ok, 1 failure, 77 systemd-analyze missing (ctest SKIP_RETURN_CODE).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd-analyze not found (apt-get install systemd): skipped"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/units" "$tmp/stubs"

units=()
while IFS= read -r -d '' file; do
    units+=("$file")
done < <(find "$root/fcgi" "$root/worker" "$root/ctl" -maxdepth 1 -type f \
    \( -name '*.service' -o -name '*.socket' -o -name '*.timer' \) -print0 2>/dev/null | sort -z)
if ((${#units[@]} == 0)); then
    echo "no unit files found under fcgi/, worker/ or ctl/" >&2
    exit 1
fi

copies=()
for unit in "${units[@]}"; do
    copy=$tmp/units/$(basename "$unit")
    [[ ! -e $copy ]] || {
        echo "two unit files named $(basename "$unit")" >&2
        exit 1
    }
    cp "$unit" "$copy"
    # Exec*= values may start with the prefixes - @ : + ! (systemd.service(5), "Command lines").
    while IFS= read -r exe; do
        [[ $exe == /* && ! -x $exe ]] || continue
        mkdir -p "$tmp/stubs$(dirname "$exe")"
        printf '#!/bin/sh\nexit 0\n' >"$tmp/stubs$exe"
        chmod +x "$tmp/stubs$exe"
        sed -i -E "s|^(Exec[A-Za-z]*=[-@:+!]*)$exe([[:space:]]\|$)|\\1$tmp/stubs$exe\\2|" "$copy"
    done < <(sed -n -E 's/^Exec[A-Za-z]*=[-@:+!]*([^[:space:]]+).*/\1/p' "$copy")
    if [[ $copy == *@.* ]]; then
        copies+=("${copy/@./@1.}")
    else
        copies+=("$copy")
    fi
done

status=0
output=$(cd "$tmp/units" &&
    SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no --recursive-errors=one "${copies[@]}" 2>&1) ||
    status=$?
if ((status != 0)) || [[ -n $output ]]; then
    printf '%s\n' "${output//$tmp\/units\//}" >&2
    echo "systemd-analyze verify failed (exit status $status) on: ${units[*]#"$root"/}" >&2
    exit 1
fi

# Every service stays sandboxed: systemd's own exposure score (0 best, 10 worst) at most 2.0,
# where kiln-api's is 1.6. A unit that loses its hardening lines fails here.
for unit in "${units[@]}"; do
    [[ $unit == *.service ]] || continue
    if ! score=$(SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=yes --threshold=20 \
        "$unit" 2>&1); then
        printf '%s\n' "$score" | tail -n 1 >&2
        echo "${unit#"$root"/} is exposed beyond 2.0 (systemd-analyze security)" >&2
        exit 1
    fi
done
echo "verified: ${units[*]#"$root"/}"
