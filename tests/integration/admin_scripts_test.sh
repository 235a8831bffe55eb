#!/usr/bin/env bash
# scripts/kiln-status and scripts/kiln-worker-ctl against the stack of scripts/test: exit
# statuses (the monitoring contract), worker start/stop/status idempotence, stale pid files.
# The workers it starts use a run and log directory of their own, so the stack's workers are
# never touched, and only the shipped and test converters, as the stack's own workers do.
# Needs KILN_TEST_CONFIG, KILN_TEST_VAR, KILN_TEST_KILNCTL, KILN_TEST_DB_SOCKET, KILN_TEST_URL
# (scripts/test).
# Exit status: 0 ok, 1 failure, 77 not run by scripts/test (ctest SKIP_RETURN_CODE).
set -euo pipefail

for var in KILN_TEST_CONFIG KILN_TEST_VAR KILN_TEST_KILNCTL KILN_TEST_DB_SOCKET KILN_TEST_URL; do
    if [[ -z ${!var:-} ]]; then
        echo "$var is not set: run through scripts/test; skipped"
        exit 77
    fi
done
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
status_cmd=$root/scripts/kiln-status
ctl_cmd=$root/scripts/kiln-worker-ctl
worker_bin=$(dirname "$(dirname "$KILN_TEST_KILNCTL")")/worker/kiln-worker
export KILN_CONVERTERS=$root/converters:$root/tests/converters
unset KILN_VAR KILN_CONFIG KILN_DB KILN_WAKEUP

tmp=$(mktemp -d "$KILN_TEST_VAR/admin-scripts.XXXXXX")
ctl=("$ctl_cmd" --config "$KILN_TEST_CONFIG" --run-dir "$tmp/run" --log-dir "$tmp/log"
    --bin "$worker_bin")
test_job_type=admin-scripts-test.unclaimable
db() {
    mariadb --no-defaults --socket="$KILN_TEST_DB_SOCKET" --user=root --batch \
        --init-command="SET time_zone = '+00:00'" \
        --skip-column-names kiln -e "$1"
}
cleanup() {
    set +e
    "${ctl[@]}" stop >/dev/null 2>&1
    db "DELETE FROM jobs WHERE type = '$test_job_type'"
    rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
ok() { echo "ok: $*"; }
not_ok() {
    echo "FAILED: $*"
    failures=$((failures + 1))
}
# expect_exit STATUS NAME COMMAND...: runs COMMAND, keeps its stdout in $out.
expect_exit() {
    local want=$1 name=$2 got=0
    shift 2
    out=$("$@" 2>"$tmp/stderr") || got=$?
    if ((got == want)); then
        ok "$name"
    else
        not_ok "$name: exit status $got, expected $want"
        { echo "$out"; cat "$tmp/stderr"; } | sed 's/^/    /'

    fi
}
expect_output() {
    if grep -qE -- "$2" <<<"$out"; then ok "$1"; else
        not_ok "$1: no line matches '$2' in:"
        while IFS= read -r line; do echo "    $line"; done <<<"$out"
    fi
}
# Valid JSON, as MariaDB's parser sees it: no JSON tool is among the stack's dependencies.
expect_json() {
    local valid
    valid=$(db "SELECT JSON_VALID(FROM_BASE64('$(base64 -w0 <<<"$out")'))")
    if [[ $valid == 1 ]]; then ok "$1"; else not_ok "$1: not valid JSON: $out"; fi
}
host=$(uname -n)

# --- kiln-status -----------------------------------------------------------------------------

expect_exit 0 KilnStatusIsOkWithTheStacksWorkers "$status_cmd" --config "$KILN_TEST_CONFIG"
expect_output KilnStatusFirstLineIsTheVerdict '^kiln OK: '
expect_exit 0 KilnStatusJsonHasTheSameVerdict "$status_cmd" --config "$KILN_TEST_CONFIG" --json
expect_json KilnStatusJsonIsValid
expect_output KilnStatusJsonSaysOk '^\{"status":"ok","exit_status":0,'

expect_exit 2 KilnStatusIsCriticalWhenTheDatabaseIsUnreachable \
    env KILN_DB="mariadb://root@localhost/kiln?socket=$tmp/no-such.sock" \
    "$status_cmd" --config "$KILN_TEST_CONFIG"
expect_output KilnStatusNamesTheUnreachableDatabase "^kiln CRITICAL: database $tmp/no-such.sock"
expect_exit 2 KilnStatusJsonIsCriticalToo \
    env KILN_DB="mariadb://root@localhost/kiln?socket=$tmp/no-such.sock" \
    "$status_cmd" --config "$KILN_TEST_CONFIG" --json
expect_json KilnStatusJsonIsValidWithoutADatabase
expect_exit 3 KilnStatusRejectsAnUnknownArgument "$status_cmd" --config "$KILN_TEST_CONFIG" --bogus
# --url: the request path clients take. Port 1 refuses at once: kiln-api unreachable.
expect_exit 0 KilnStatusIsOkWhenTheApiAnswers "$status_cmd" --config "$KILN_TEST_CONFIG" \
    --url "$KILN_TEST_URL"
expect_output KilnStatusShowsTheApiAnswer "^API: $KILN_TEST_URL/health answered 200$"
expect_exit 2 KilnStatusIsCriticalWhenTheApiDoesNotAnswer "$status_cmd" \
    --config "$KILN_TEST_CONFIG" --url http://127.0.0.1:1 --json
expect_json KilnStatusJsonIsValidWithTheApiDown
expect_output KilnStatusJsonNamesTheApi '"api":\{"url":"http://127.0.0.1:1/health","status":0\}'

# A job no worker can claim, due for an hour. Seen through a copy of the config (another path:
# the stack's workers are not its processes) with an empty wake-up directory, no worker is alive.
db "INSERT INTO jobs (id, owner, type, status, priority, params, max_attempts, run_at,
    created_at, updated_at) VALUES ('admscr$(date +%s%N | tail -c 21)', 'test',
    '$test_job_type', 'pending', 50, '{}', 1, NOW(3) - INTERVAL 1 HOUR, NOW(3), NOW(3))"
# A job another test left running counts its worker as alive until the lease expires.
for ((i = 0; i < 40; i++)); do
    [[ $(db "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND lease_expires_at >= NOW(3)") \
        == 0 ]] && break
    sleep 1
done
cp "$KILN_TEST_CONFIG" "$tmp/copy.toml"
mkdir -p "$tmp/no-workers"
expect_exit 1 KilnStatusWarnsWhenJobsAreDueAndNoWorkerIsAlive \
    env KILN_WAKEUP="$tmp/no-workers" "$status_cmd" --config "$tmp/copy.toml" --run-dir "$tmp"
expect_output KilnStatusSaysWhyItWarns '^kiln WARNING: no worker alive for [0-9]+ due jobs?'

# --- kiln-worker-ctl -------------------------------------------------------------------------

expect_exit 3 CtlStatusWithoutWorkersExits3 "${ctl[@]}" status
expect_exit 0 CtlStartsTwoWorkers "${ctl[@]}" start -n 2 -- --slots 1
expect_exit 0 CtlStatusShowsThemRunning "${ctl[@]}" status
expect_output CtlStatusListsWorker1 '^kiln-worker-1 +running'
expect_output CtlStatusListsWorker2 '^kiln-worker-2 +running'
pids_before=$(cat "$tmp/run"/kiln-worker-*.pid 2>/dev/null || true)
expect_exit 0 CtlStartIsIdempotent "${ctl[@]}" start -n 2
if [[ $(cat "$tmp/run"/kiln-worker-*.pid) == "$pids_before" ]]; then
    ok CtlStartLeavesRunningWorkersAlone
else
    not_ok CtlStartLeavesRunningWorkersAlone
fi
for i in 1 2; do
    if grep -q "\"msg\":\"kiln-worker ready\".*\"worker\":\"$host-$i\"" \
        "$tmp/log/kiln-worker-$i.log"; then
        ok "CtlNamesWorker${i}HostDash$i"
    else
        not_ok "CtlNamesWorker${i}HostDash$i"
    fi
done
expect_exit 0 KilnStatusSeesTheCtlWorkers "$status_cmd" --config "$KILN_TEST_CONFIG" \
    --run-dir "$tmp/run"
expect_output KilnStatusShowsCtlWorker1 " $host-1 .*kiln-worker-1\.pid"
# Workers are alive now: only the wait of the unclaimable job is left to warn about.
expect_exit 1 KilnStatusWarnsWhenTheOldestDueJobWaitedTooLong \
    "$status_cmd" --config "$KILN_TEST_CONFIG" --max-pending-age 600
expect_output KilnStatusNamesTheWait '^kiln WARNING: the oldest due job has waited 1h'
db "DELETE FROM jobs WHERE type = '$test_job_type'"
expect_exit 0 CtlReloadSignalsTheWorkers "${ctl[@]}" reload

expect_exit 0 CtlStops "${ctl[@]}" stop
survivors=""
for pid in $pids_before; do
    # A zombie has stopped; whether it was reaped yet is up to its new parent.
    if [[ $(cat "/proc/$pid/stat" 2>/dev/null) == *") "[^Z]* ]]; then
        survivors+=" $pid"
    fi
done
if [[ -z $survivors ]]; then ok CtlStopEndsEveryWorker; else
    not_ok "CtlStopEndsEveryWorker: still running:$survivors"
fi
expect_exit 3 CtlStatusAfterStopExits3 "${ctl[@]}" status
expect_exit 0 CtlStopIsIdempotent "${ctl[@]}" stop

# A pid file whose process is gone: status says so (LSB: 1), stop clears it.
sleep 0 &
dead=$!
wait "$dead"
echo "$dead" >"$tmp/run/kiln-worker-7.pid"
expect_exit 1 CtlStatusReportsAStalePidFileWith1 "${ctl[@]}" status
expect_output CtlStatusNamesTheStalePidFile '^kiln-worker-7 +dead'
expect_exit 0 KilnStatusReportsTheStalePidFile "$status_cmd" --config "$KILN_TEST_CONFIG" \
    --run-dir "$tmp/run"
expect_output KilnStatusNamesTheStalePidFile "stale pid file $tmp/run/kiln-worker-7.pid"
expect_exit 0 CtlStopClearsAStalePidFile "${ctl[@]}" stop
expect_exit 3 CtlStatusAfterClearingExits3 "${ctl[@]}" status

# A worker that cannot start (a config it rejects) fails start with its log.
printf '[worker]\nslots = 0\n' >"$tmp/bad.toml"
expect_exit 1 CtlStartFailsWhenTheWorkerExits "$ctl_cmd" start --config "$tmp/bad.toml" \
    --run-dir "$tmp/run" --log-dir "$tmp/log" --bin "$worker_bin"
if grep -q 'worker.slots' "$tmp/stderr"; then ok CtlStartShowsTheWorkersLastWords; else
    not_ok "CtlStartShowsTheWorkersLastWords: $(cat "$tmp/stderr")"
fi

# --- bad usage exits 2 (units' RestartPreventExitStatus=2, admins' scripts) --------------------

build_dir=$(dirname "$(dirname "$KILN_TEST_KILNCTL")")
expect_exit 0 KilnctlHelpExits0 "$KILN_TEST_KILNCTL" --help
expect_exit 2 KilnctlWithoutACommandExits2 "$KILN_TEST_KILNCTL"
expect_exit 2 KilnctlUnknownCommandExits2 "$KILN_TEST_KILNCTL" frobnicate
if grep -q "unknown command 'frobnicate'" "$tmp/stderr"; then ok KilnctlNamesTheUnknownCommand; else
    not_ok "KilnctlNamesTheUnknownCommand: $(cat "$tmp/stderr")"
fi
expect_exit 2 KilnctlMissingRequiredOptionExits2 "$KILN_TEST_KILNCTL" token create
expect_exit 2 KilnctlRetryWithoutIdOrTypeExits2 "$KILN_TEST_KILNCTL" --config /nonexistent retry
expect_exit 2 KilnctlBadDurationExits2 "$KILN_TEST_KILNCTL" purge --completed-older-than soon
# CLI11 would read -1 into the unsigned count as 2^64-1, which keeps every failed job.
expect_exit 2 KilnctlNegativeKeepFailedExits2 "$KILN_TEST_KILNCTL" purge --keep-failed -1
expect_exit 2 KilnctlBadOwnerExits2WithoutAskingTheDatabase "$KILN_TEST_KILNCTL" \
    --config /nonexistent token create --owner 'bad owner!'
expect_exit 2 KilnctlMigrateWithoutItsDirectoryExits2 "$KILN_TEST_KILNCTL" migrate \
    --migrations "$tmp/no-such-dir"
if grep -q "no migrations directory $tmp/no-such-dir" "$tmp/stderr"; then
    ok KilnctlNamesTheMissingMigrationsDirectory
else
    not_ok "KilnctlNamesTheMissingMigrationsDirectory: $(cat "$tmp/stderr")"
fi
mkdir "$tmp/empty-sql"
expect_exit 2 KilnctlMigrateFromADirectoryWithoutMigrationsExits2 "$KILN_TEST_KILNCTL" \
    --config "$KILN_TEST_CONFIG" migrate --migrations "$tmp/empty-sql"
# With a working config: refused as usage, before the database would answer "no such job".
expect_exit 2 KilnctlRetryOfAJobWithFailedSinceExits2 "$KILN_TEST_KILNCTL" \
    --config "$KILN_TEST_CONFIG" retry AAAAAAAAAAAAAAAAAAAAAAAAAA --failed-since 1h
expect_exit 2 KilnctlRevokeOfNothingExits2 "$KILN_TEST_KILNCTL" --config "$KILN_TEST_CONFIG" \
    token revoke ''
expect_exit 2 KilnctlWithAMissingConfigFileExits2 "$KILN_TEST_KILNCTL" --config /nonexistent \
    token list

# Three migrates at once on an empty database (a deploy on three hosts): they take turns, and
# every one succeeds.
race_db=kiln_migrate_race_$$
sed "s/^name = .*/name = \"$race_db\"/" "$KILN_TEST_CONFIG" >"$tmp/race.toml"
db "CREATE DATABASE $race_db"
race_pids=()
for i in 1 2 3; do
    "$KILN_TEST_KILNCTL" --config "$tmp/race.toml" migrate --migrations "$root/sql" \
        >"$tmp/race-$i.out" 2>&1 &
    race_pids+=("$!")
done
race_failed=0
for pid in "${race_pids[@]}"; do wait "$pid" || race_failed=$((race_failed + 1)); done
db "DROP DATABASE $race_db"
if ((race_failed == 0)); then ok ConcurrentMigratesAllSucceed; else
    not_ok "ConcurrentMigratesAllSucceed: $race_failed failed: $(cat "$tmp"/race-*.out)"
fi

if [[ ! -e /etc/kiln/kiln.toml ]]; then
    # Port 1 refuses at once: the database kilnctl was pointed at does not answer.
    expect_exit 3 KilnctlWithoutAConfigFileExits3 env KILN_DB=mariadb://kiln@127.0.0.1:1/kiln \
        "$KILN_TEST_KILNCTL" token list
    if grep -q 'no config file was read' "$tmp/stderr"; then ok KilnctlSaysNoConfigFileWasRead; else
        not_ok "KilnctlSaysNoConfigFileWasRead: $(cat "$tmp/stderr")"
    fi
fi
expect_exit 2 WorkerUnknownOptionExits2 "$worker_bin" --slot 2
expect_exit 2 WorkerOutOfRangeOptionExits2 "$worker_bin" --slots 0
expect_exit 2 ApiUnknownOptionExits2 "$build_dir/fcgi/kiln-api" --bogus

if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
