# shellcheck shell=bash source-path=SCRIPTDIR/../..
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

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
# shellcheck source=scripts/lib/stack.sh
source "$KILN_ROOT/scripts/lib/stack.sh"
# shellcheck source=scripts/lib/config.sh
source "$KILN_ROOT/scripts/lib/config.sh"

# shellcheck disable=SC2034  # for the scenarios
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
# shellcheck disable=SC2120  # the arguments are optional
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
    # A SIGKILLed job makes bash print "Killed" whenever it notices; nobody waits for its status.
    [[ $2 != KILL ]] || disown "$pid" 2>/dev/null || true
    kill "-$2" "$pid"
}

# wait_worker_exit NAME SECONDS: waits for the worker (a child of this shell) to exit and sets
# FAULTS_EXIT to its exit status (127 after SIGKILL: nobody waits for it), or to "timeout" (the
# worker is then killed).
# shellcheck disable=SC2034  # FAULTS_EXIT is for the caller
wait_worker_exit() {
    local pid deadline=$(($(now_us) + $2 * 1000000))
    pid=$(pid_of "$1") || die "no pid file for $1"
    while proc_alive "$pid"; do
        if (($(now_us) >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            { wait "$pid"; } 2>/dev/null || true
            rm -f "$KILN_VAR/run/$1.pid"
            FAULTS_EXIT=timeout
            return 0
        fi
        sleep 0.05
    done
    FAULTS_EXIT=0
    # Braces, so that bash's "Killed" job notice goes to /dev/null as well.
    { wait "$pid"; } 2>/dev/null || FAULTS_EXIT=$?
    rm -f "$KILN_VAR/run/$1.pid"
}

# --- Clients -----------------------------------------------------------------------------------

# post_jobs WANT OUT CURL_ARGS...: POSTs to /api/v1/jobs with the given body arguments (a JSON
# --data or multipart -F fields) until WANT jobs were acknowledged with 201 (at most 50 tries per
# job), one line per request to OUT:
#   STATUS SECONDS JOB_ID|- END_US VERDICT
# VERDICT is ok, or for a 503 "problem" when it lacks Retry-After or the code unavailable.
# curl gives up after 5 s (status 000): a hanging request is an answer of its own.
post_jobs() {
    local want=$1 out=$2 got=0 tries=0 reply status seconds id verdict
    shift 2
    local headers=$out.headers response=$out.body
    while ((got < want && tries < want * 50)); do
        tries=$((tries + 1))
        reply=$(curl -sS -D "$headers" -o "$response" -w '%{http_code} %{time_total}' \
            --max-time 5 -H "Authorization: Bearer $FAULTS_TOKEN" "$@" \
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

# start_posting LOOPS TOTAL PREFIX CURL_ARGS...: LOOPS background post_jobs sharing TOTAL jobs,
# writing PREFIX-N.answers; their pids are added to FAULTS_POSTERS.
FAULTS_POSTERS=()
start_posting() {
    local loops=$1 total=$2 prefix=$3 i share
    shift 3
    for ((i = 0; i < loops; i++)); do
        share=$((total / loops + (i < total % loops ? 1 : 0)))
        : >"$prefix-$i.answers"
        post_jobs "$share" "$prefix-$i.answers" "$@" 9>&- &
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

# answers PREFIX: every answer line of the posters of PREFIX.
answers() {
    cat "$1"-*.answers
}

# acknowledged_ids PREFIX: the ids of the 201 answers of the posters of PREFIX, one a line.
acknowledged_ids() {
    answers "$1" | awk '$1 == 201 { print $3 }'
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

# count_jobs ACKNOWLEDGED JOBS_TSV LOG...: the counts line of a scenario without SIGKILLs, where
# every run that a worker finished must have been recorded. ACKNOWLEDGED holds the ids answered
# with 201, JOBS_TSV "ID STATUS ATTEMPTS" rows of the jobs table, the LOGs are the workers'.
#   lost        acknowledged, and not completed in the end (or no row at all)
#   duplicated  more than one run of the job finished as completed, not counting runs of a
#               worker that logged losing the job's lease (fenced: its outcome was discarded)
#   phantom     completed with no finished run in any worker's log. A fenced run counts here:
#               a recording whose COMMIT was applied but whose answer was lost (the database
#               killed in between) is retried, finds the job no longer held and is logged as
#               "lease lost", yet it is what completed the job.
#   executions  runs finished as completed; fenced: those of fenced workers
count_jobs() {
    local acked=$1 jobs=$2
    shift 2
    worker_runs "$@" >"$FAULTS_OUT/finished"
    lease_losses "$@" >"$FAULTS_OUT/fenced"
    awk -v ackf="$acked" -v jobsf="$jobs" -v finf="$FAULTS_OUT/finished" \
        -v fencef="$FAULTS_OUT/fenced" '
        FILENAME == ackf { acked[$1] = 1; next }
        FILENAME == jobsf { status[$1] = $2; next }
        FILENAME == fencef { fenced_in[$1, $2] = 1; next }
        FILENAME == finf {
            if ($3 != "completed") next
            executions++
            if (($1, $4) in fenced_in) { fenced++; fenced_runs[$1]++ } else runs[$1]++
            next
        }
        END {
            for (j in acked) {
                created++
                if (status[j] == "completed") completed++
                else { lost++; if (lost <= 5) print "lost job " j " status " status[j] > "/dev/stderr" }
                if (runs[j] > 1) {
                    duplicated++
                    if (duplicated <= 5) print "duplicated job " j ": " runs[j] " recorded runs" > "/dev/stderr"
                }
                if (status[j] == "completed" && runs[j] + fenced_runs[j] == 0) phantom++
            }
            for (j in status) if (!(j in acked)) unacknowledged++
            printf "created=%d completed=%d lost=%d duplicated=%d executions=%d fenced=%d", \
                created, completed, lost, duplicated, executions, fenced
            printf " phantom=%d unacknowledged_rows=%d\n", phantom, unacknowledged
        }' "$acked" "$jobs" "$FAULTS_OUT/fenced" "$FAULTS_OUT/finished"
}

# value NAME COUNTS: the number NAME=N in a counts line.
value() {
    [[ " $2 " =~ \ $1=([0-9]+)\  ]] && printf '%s' "${BASH_REMATCH[1]}"
}

# --- Sources on disk and in the database ----------------------------------------------------

# Every source file as the database lists it: "JOB NAME SIZE SHA256", sorted.
listed_sources() {
    sql "SELECT j.id, f.name, f.size, f.sha256 FROM job_files f JOIN jobs j ON j.seq = f.job_seq
         WHERE f.kind = 'source'" | tr '\t' ' ' | sort
}

# Every file under sources/ as stored: "JOB NAME SIZE SHA256", sorted.
stored_sources() {
    (cd "$KILN_STORAGE/sources" && find . -mindepth 2 -maxdepth 2 -type f -printf '%P\n' |
        while IFS= read -r path; do
            printf '%s %s %s %s\n' "${path%%/*}" "${path#*/}" "$(stat -c %s "$path")" \
                "$(sha256sum <"$path" | cut -d' ' -f1)"
        done) | sort
}

# check_sources all|listed: compares job rows, their job_files rows and sources/ and prints
# "ROWS_WITHOUT_FILES UNLISTED_FILES DIRS_WITHOUT_ROW":
#   ROWS_WITHOUT_FILES  rows with a listed source that is missing or differs (name, size,
#                       SHA-256), and with "all" (every job was created with files) also rows
#                       without any listed source or without sources/{job}/
#   UNLISTED_FILES      sources/{job}/ of a row holding a file the row does not list
#   DIRS_WITHOUT_ROW    sources/{job}/ without a row (an orphan, until the sweep)
# The listings stay in $FAULTS_OUT (rows, dirs, listed, stored); problems go to stderr.
check_sources() {
    local out=$FAULTS_OUT
    sql "SELECT id FROM jobs" | sort >"$out/rows"
    (cd "$KILN_STORAGE/sources" && find . -mindepth 1 -maxdepth 1 -printf '%P\n') >"$out/dirs"
    listed_sources >"$out/listed"
    stored_sources >"$out/stored"
    awk -v all="$1" -v listedf="$out/listed" -v storedf="$out/stored" -v rowsf="$out/rows" \
        -v dirsf="$out/dirs" '
        FILENAME == rowsf { row[$1] = 1; next }
        FILENAME == dirsf { dir[$1] = 1; next }
        FILENAME == listedf { listed[$0] = 1; listed_job[$1] = 1; next }
        FILENAME == storedf { stored[$0] = 1; next }
        END {
            for (f in listed) if (!(f in stored)) { split(f, p, " "); bad_row[p[1]] = 1 }
            if (all == "all")
                for (j in row) if (!(j in listed_job) || !(j in dir)) bad_row[j] = 1
            for (j in bad_row) { rows_without_files++; print "row without its files: " j > "/dev/stderr" }
            for (f in stored) {
                split(f, p, " ")
                if ((p[1] in row) && !(f in listed)) extra[p[1]] = 1
            }
            for (j in extra) { unlisted++; print "unlisted files in sources/" j > "/dev/stderr" }
            for (d in dir) if (!(d in row)) dirs_without_row++
            printf "%d %d %d\n", rows_without_files, unlisted, dirs_without_row
        }' "$out/rows" "$out/dirs" "$out/listed" "$out/stored"
}
