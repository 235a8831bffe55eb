# shellcheck shell=bash
# What the fault-injection scenarios share. Each scenario is one executable test that starts a
# private stack of its own (MariaDB, kiln-api, nginx; no stack workers) under
# $KILN_FAULTS_VAR/faults-N on port $KILN_FAULTS_PORT_BASE+N, starts the workers itself so that
# it can kill them, stops everything on every exit, prints what it checked as one counts line on
# stdout, and exits non-zero on any lost or duplicated job or any unexpected answer.
# Sourced, not run. Needs bash, curl, awk and the mariadb client (no jq, no python).
#
# Environment: KILN_FAULTS_VAR (directory holding the stacks, default $KILN_ROOT/var),
# KILN_FAULTS_PORT_BASE (18500).

set -euo pipefail

# shellcheck source=../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
# shellcheck source=../../scripts/lib/stack.sh
source "$KILN_ROOT/scripts/lib/stack.sh"
# shellcheck source=../../scripts/lib/config.sh
source "$KILN_ROOT/scripts/lib/config.sh"

FAULTS_DIR=$KILN_ROOT/tests/faults
FAULTS_BACKGROUND=()  # pids of this script's client loops, ended on exit
FAULTS_FAILURES=()    # one line per failed check, printed at the end
FAULTS_TOKEN=

# faults_init NUMBER NAME BUILD_DIR: paths, the exit trap, and a clean directory for scenario N.
faults_init() {
    local number=$1 build=${3:-}
    FAULTS_NAME=$2
    [[ -n $build && -d $build ]] || die "usage: $0 BUILD_DIR (the CMake build directory)"
    require_root
    stack_init "${KILN_FAULTS_VAR:-$KILN_ROOT/var}/faults-$number" \
        "$((${KILN_FAULTS_PORT_BASE:-18500} + number))" "$(cd "$build" && pwd -P)"
    require_binaries
    [[ -x $KILN_WORKER_BIN ]] || die "$KILN_WORKER_BIN is missing (did the build produce it?)"
    # Two runs of one scenario at once would wipe each other's database.
    stack_lock "$KILN_VAR.lock" 10 || die "another run uses $KILN_VAR"
    trap faults_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    stop_stack
    rm -rf "$KILN_VAR"
    FAULTS_OUT=$KILN_VAR/faults
    mkdir -p "$FAULTS_OUT"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
faults_on_exit() {
    local status=$? pid
    set +e
    trap '' INT TERM HUP
    for pid in "${FAULTS_BACKGROUND[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${FAULTS_BACKGROUND[@]}"; do
        wait "$pid" 2>/dev/null
    done
    stop_stack
    if ((status != 0)); then
        for f in "$KILN_VAR"/log/kiln-*.log; do
            [[ -e $f ]] && show_log_tail "$(basename "$f" .log)" 15
        done
        log "$FAULTS_NAME: failed (exit status $status); logs in $KILN_VAR/log"
    fi
    exit "$status"
}

# The private stack without workers: the repository's converters plus the extra definition
# directories given as arguments.
faults_start_stack() {
    KILN_WORKERS=0 start_stack "$KILN_ROOT/converters" "$KILN_ROOT/tests/converters" \
        "$KILN_ROOT/tests/converters-controlled" "$@"
    FAULTS_TOKEN=$(new_admin_token "faults")
}

sql() {
    mariadb_client --batch --skip-column-names kiln -e "$1"
}

now_us() {
    printf '%s' "${EPOCHREALTIME/[.,]/}"
}

# Records a failed check; the scenario goes on so the counts line shows everything.
check() {
    local what=$1
    shift
    if ! "$@"; then
        FAULTS_FAILURES+=("$what")
        log "$FAULTS_NAME: CHECK FAILED: $what"
    fi
}

# Prints the counts line and exits 1 when a check failed.
faults_finish() {
    printf '%s: %s\n' "$FAULTS_NAME" "$*"
    if ((${#FAULTS_FAILURES[@]} > 0)); then
        printf '%s: FAILED: %s\n' "$FAULTS_NAME" "${FAULTS_FAILURES[@]}"
        exit 1
    fi
    printf '%s: ok\n' "$FAULTS_NAME"
}

# --- Workers -----------------------------------------------------------------------------------

# wait_for_log NAME PATTERN SECONDS: until log/NAME.log holds a line matching the fixed string.
wait_for_log() {
    local deadline=$(($(now_us) + $3 * 1000000))
    until grep -qF -- "$2" "$KILN_VAR/log/$1.log" 2>/dev/null; do
        check_running "$1"
        (($(now_us) < deadline)) || die "$1 did not log '$2' within $3 s"
        sleep 0.1
    done
}

# start_worker NAME ARGS...: a kiln-worker named NAME (also its log and pid file name, which
# must start with kiln-worker- so stop_stack stops it in order), ready when it returns.
start_worker() {
    local name=$1
    shift
    start_process "$name" "$KILN_WORKER_BIN" --config "$KILN_CONF" --name "$name" "$@"
    wait_for_log "$name" '"msg":"kiln-worker ready"' 60
}

# signal_worker NAME SIGNAL: sends SIGNAL to the worker process only; its converters run in
# process groups of their own and, like after a real crash, are left to finish.
signal_worker() {
    local pid
    pid=$(pid_of "$1") || die "no pid file for $1"
    kill "-$2" "$pid"
}

# wait_worker_exit NAME SECONDS: waits for the worker (a child of this shell) to exit and sets
# FAULTS_EXIT to its exit status, or to "timeout" (the worker is then killed).
wait_worker_exit() {
    local pid deadline=$(($(now_us) + $2 * 1000000))
    pid=$(pid_of "$1") || die "no pid file for $1"
    while proc_alive "$pid"; do
        if (($(now_us) >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            rm -f "$KILN_VAR/run/$1.pid"
            FAULTS_EXIT=timeout
            return 0
        fi
        sleep 0.05
    done
    FAULTS_EXIT=0
    wait "$pid" 2>/dev/null || FAULTS_EXIT=$?
    rm -f "$KILN_VAR/run/$1.pid"
}

# --- Clients -----------------------------------------------------------------------------------

# post_jobs WANT OUT BODY: POSTs BODY (JSON) to /api/v1/jobs until WANT jobs were acknowledged
# with 201 (at most 50 tries per job), one line per request to OUT:
#   STATUS SECONDS JOB_ID|- END_US VERDICT
# VERDICT is ok, or for a 503 "problem" when it lacks Retry-After or the code unavailable.
# curl gives up after 5 s (status 000): a hanging request is an answer of its own.
post_jobs() {
    local want=$1 out=$2 body=$3 got=0 tries=0 reply status seconds id verdict
    local headers=$out.headers response=$out.body
    while ((got < want && tries < want * 50)); do
        tries=$((tries + 1))
        reply=$(curl -sS -D "$headers" -o "$response" -w '%{http_code} %{time_total}' \
            --max-time 5 -H "Authorization: Bearer $FAULTS_TOKEN" \
            -H 'Content-Type: application/json' --data "$body" \
            "$KILN_URL/api/v1/jobs" 2>/dev/null) || true
        status=${reply%% *}
        seconds=${reply#* }
        id=-
        verdict=ok
        if [[ $status == 201 && $(<"$response") =~ \"id\":\"([0-9a-z]+)\" ]]; then
            id=${BASH_REMATCH[1]}
            got=$((got + 1))
        elif [[ $status == 503 ]]; then
            grep -qi '^Retry-After: *[0-9]' "$headers" && grep -qF '"code":"unavailable"' "$response" ||
                verdict=problem
        fi
        printf '%s %s %s %s %s\n' "${status:-000}" "${seconds:-0}" "$id" "$(now_us)" "$verdict" >>"$out"
        # Retry-After says 1 s; a shorter pause samples the outage more densely.
        [[ $status == 201 ]] || sleep 0.2
    done
}

# start_posting LOOPS TOTAL PREFIX BODY: LOOPS background post_jobs sharing TOTAL jobs, writing
# PREFIX.N; their pids are in FAULTS_POSTERS.
start_posting() {
    local loops=$1 total=$2 prefix=$3 body=$4 i share
    FAULTS_POSTERS=()
    for ((i = 0; i < loops; i++)); do
        share=$((total / loops + (i < total % loops ? 1 : 0)))
        : >"$prefix.$i"
        post_jobs "$share" "$prefix.$i" "$body" 9>&- &
        FAULTS_POSTERS+=("$!")
        FAULTS_BACKGROUND+=("$!")
    done
}

# Whether every poster has ended.
posters_done() {
    local pid
    for pid in "${FAULTS_POSTERS[@]}"; do
        proc_alive "$pid" && return 1
    done
    return 0
}

# acknowledged_ids PREFIX: the ids of the 201 answers in PREFIX.*, one a line.
acknowledged_ids() {
    cat "$1".[0-9]* | awk '$1 == 201 { print $3 }'
}

# --- Worker logs -------------------------------------------------------------------------------

# worker_runs LOG...: "JOB ATTEMPT OUTCOME LOGFILE" for every "job finished" line.
worker_runs() {
    awk '
        function field(key,   re, v) {
            re = "\"" key "\":\"?[^\",}]*"
            if (!match($0, re)) return "?"
            v = substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3)
            sub(/^"/, "", v)
            return v
        }
        /"msg":"job finished"/ { print field("job"), field("attempt"), field("outcome"), FILENAME }
        ' "$@"
}

# lease_losses LOG...: "JOB LOGFILE" for every "lease lost" line (the worker was fenced off).
lease_losses() {
    awk 'match($0, /"msg":"lease lost[^"]*"/) && match($0, /"job":"[0-9a-z]+"/) {
        print substr($0, RSTART + 7, RLENGTH - 8), FILENAME }' "$@"
}
