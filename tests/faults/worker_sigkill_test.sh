#!/usr/bin/env bash
# Fault injection 1: 1,000 jobs are created while one of two kiln-workers is SIGKILLed every
# 1.5-3 s and restarted (leases of 2 s, so the reapers bring the jobs back quickly).
#
#   tests/faults/worker_sigkill_test.sh BUILD_DIR
#
# The converter (tests/faults/bin/faults-converter) writes out.txt naming its execution and logs
# "start"/"done" lines, so every execution that ran to completion is counted, whether or not a
# worker lived to record it. Per job:
#   lost        the job did not end completed.
#   duplicated  results/{job}/ does not hold exactly one out.txt whose SHA-256 is that of the
#               job's one result row and whose content names an execution that ran to
#               completion (two sets, a stale set, or a set nobody recorded); or one attempt
#               ran the converter twice; or an execution other than the published one ran to
#               completion and was not cut short.
#   cut_short   an execution other than the published one whose worker was SIGKILLed (it logged
#               no "job finished" for it, or it did in the log of a killed worker): the kill
#               came after the converter finished and before the outcome was recorded.
#   fenced      an execution other than the published one whose live worker logged losing the
#               lease of that job (its outcome was discarded, as leases require).
# "Exactly once per completed attempt" is then: executions = completed + cut_short + fenced,
# with duplicated = 0.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JOBS=${KILN_FAULTS_JOBS:-1000}
faults_init 1 worker-sigkill "${1:-}"

definitions=$KILN_VAR/converters
runs=$FAULTS_OUT/runs.log
mkdir -p "$definitions"
: >"$runs"
# Generated because the runs log's path is this stack's own.
cat >"$definitions/test.faults.toml" <<TOML
# Fault-injection tests only: writes out.txt naming the execution, logs it to the runs log.
name = "test.faults"
description = "Write out.txt naming the execution (fault-injection tests only)"
min_files = 0
max_files = 0
timeout_seconds = 60
# Every SIGKILL costs the jobs it cuts short an attempt: never let that fail a job here.
max_attempts = 100

[params.ms]
type = "integer"
min = 0
max = 10000
default = 0

[run]
program = $(toml_string "$FAULTS_DIR/bin/faults-converter")
args = ["{ms}", "{output:out}", $(toml_string "$runs")]
outputs = ["out.txt"]
TOML
faults_start_stack "$definitions"

worker_args=(--types test.faults --slots 2 --lease-seconds 2 --grace-seconds 2)
declare -A generation=([a]=1 [b]=1)
killed_logs=()
start_worker kiln-worker-a1 "${worker_args[@]}"
start_worker kiln-worker-b1 "${worker_args[@]}"

log "$FAULTS_NAME: creating $JOBS jobs while killing a worker every few seconds"
start_posting 4 "$JOBS" "$FAULTS_OUT/created" -H 'Content-Type: application/json' \
    --data '{"type":"test.faults","params":{"ms":100}}'

# Kills go on while jobs are created and processed, alternating between the two workers.
kills=0
slot=a
deadline=$(($(now_us) + 200 * 1000000))
while (($(now_us) < deadline)); do
    sleep "$((1 + RANDOM % 2)).$((5 + RANDOM % 5))"
    if posters_done && (($(sql "SELECT COUNT(*) FROM jobs WHERE status <> 'completed'") == 0)); then
        break
    fi
    name=kiln-worker-$slot${generation[$slot]}
    signal_worker "$name" KILL
    wait_worker_exit "$name" 10
    killed_logs+=("$KILN_VAR/log/$name.log")
    kills=$((kills + 1))
    generation[$slot]=$((generation[$slot] + 1))
    start_worker "kiln-worker-$slot${generation[$slot]}" "${worker_args[@]}"
    [[ $slot == a ]] && slot=b || slot=a
done
check "the posters finished" posters_done
log "$FAULTS_NAME: $kills kills; waiting for the queue to drain"

drain_deadline=$(($(now_us) + 120 * 1000000))
while (($(sql "SELECT COUNT(*) FROM jobs WHERE status <> 'completed'") > 0)); do
    (($(now_us) < drain_deadline)) || break
    sleep 0.5
done
# Clean stops, so that every surviving worker's log is complete.
for s in a b; do
    stop_process "kiln-worker-$s${generation[$s]}" 30
done

# --- What happened -----------------------------------------------------------------------------
out=$FAULTS_OUT
acknowledged_ids "$out/created" >"$out/acknowledged"
bad_answers=$(answers "$out/created" | awk '$1 != 201' | wc -l)
sql "SELECT id, status, attempts FROM jobs" >"$out/jobs.tsv"
sql "SELECT j.id, f.name, f.sha256 FROM job_files f JOIN jobs j ON j.seq = f.job_seq
     WHERE f.kind = 'result'" >"$out/result_rows.tsv"
(
    cd "$KILN_STORAGE/results"
    find . -mindepth 1 -maxdepth 2 -printf '%P\n' >"$out/entries"
    find . -mindepth 2 -maxdepth 2 -type f -name out.txt -exec sha256sum {} + >"$out/sums"
    find . -mindepth 2 -maxdepth 2 -type f -name out.txt -exec awk '{ print FILENAME, $0 }' {} + \
        >"$out/contents"
)
worker_runs "$KILN_VAR"/log/kiln-worker-*.log >"$out/finished"
lease_losses "$KILN_VAR"/log/kiln-worker-*.log >"$out/fenced"
printf '%s\n' "${killed_logs[@]}" >"$out/killed"

counts=$(awk -v ackf="$out/acknowledged" -v jobsf="$out/jobs.tsv" \
    -v rowsf="$out/result_rows.tsv" -v entf="$out/entries" -v sumsf="$out/sums" \
    -v contf="$out/contents" -v runsf="$runs" -v killf="$out/killed" \
    -v finf="$out/finished" -v fencef="$out/fenced" '
    function dir_of(path,   p) { sub(/^\.\//, "", path); split(path, p, "/"); return p[1] }
    FILENAME == ackf { acked[$1] = 1; next }
    FILENAME == jobsf { status[$1] = $2; attempts[$1] = $3; next }
    FILENAME == rowsf { nrows[$1]++; rowname[$1] = $2; rowsum[$1] = $3; next }
    FILENAME == entf {
        n = split($0, p, "/")
        if (n == 1) dirs[p[1]] = 1; else { nentries[p[1]]++; entry[p[1]] = p[2] }
        next
    }
    FILENAME == sumsf { filesum[dir_of($2)] = $1; next }
    FILENAME == contf { d = dir_of($1); pubjob[d] = $2; pubatt[d] = $3; pubnonce[d] = $4; next }
    FILENAME == runsf {
        if ($1 == "start") { starts[$2, $3]++; next }
        finished[$2, $3]++
        nonce_of[$4] = $2 SUBSEP $3
        ndone[$2]++
        done_attempt[$2, ndone[$2]] = $3
        next
    }
    FILENAME == killf { killed[$1] = 1; next }
    FILENAME == finf { logged[$1, $2] = $4; next }
    FILENAME == fencef { fenced_in[$1, $2] = 1; next }
    END {
        for (j in acked) {
            created++
            if (status[j] == "completed") completed++
            else { lost++; if (lost <= 5) print "lost job " j " status " status[j] > "/dev/stderr" }
            dup = ""
            if (nentries[j] != 1 || entry[j] != "out.txt") dup = dup " results-entries=" nentries[j]
            else if (nrows[j] != 1 || rowname[j] != "out.txt" || rowsum[j] != filesum[j])
                dup = dup " result-row-mismatch"
            else if (pubjob[j] != j || nonce_of[pubnonce[j]] != j SUBSEP pubatt[j] ||
                     pubatt[j] > attempts[j])
                dup = dup " published-set-from-no-finished-run"
            executions += ndone[j]
            for (k = 1; k <= ndone[j]; k++) {
                a = done_attempt[j, k]
                if (finished[j, a] > 1 || starts[j, a] > 1) dup = dup " attempt-" a "-ran-twice"
                if (a == pubatt[j]) continue
                log_file = logged[j, a]
                if (log_file == "" || (log_file in killed)) cut_short++
                else if ((j, log_file) in fenced_in) fenced++
                else dup = dup " attempt-" a "-finished-unrecorded-by-a-live-worker"
            }
            if (dup != "") {
                duplicated++
                if (duplicated <= 5) print "duplicated job " j ":" dup > "/dev/stderr"
            }
        }
        for (j in status) if (!(j in acked)) unacknowledged_rows++
        for (d in dirs) if (!(d in status)) stray_results++
        printf "created=%d completed=%d lost=%d duplicated=%d executions=%d cut_short=%d", \
            created, completed, lost, duplicated, executions, cut_short
        printf " fenced=%d unacknowledged_rows=%d stray_results_dirs=%d\n", \
            fenced, unacknowledged_rows, stray_results
    }' "$out/acknowledged" "$out/jobs.tsv" "$out/result_rows.tsv" "$out/entries" "$out/sums" \
    "$out/contents" "$runs" "$out/killed" "$out/finished" "$out/fenced")

check "every request got 201 (bad_answers=$bad_answers)" test "$bad_answers" -eq 0
check "$JOBS jobs created" test "$(value created "$counts")" -eq "$JOBS"
check "no job lost" test "$(value lost "$counts")" -eq 0
check "no job duplicated" test "$(value duplicated "$counts")" -eq 0
check "every job row was acknowledged" test "$(value unacknowledged_rows "$counts")" -eq 0
check "no results directory without a job" test "$(value stray_results_dirs "$counts")" -eq 0
check "executions = completed + cut_short + fenced" test "$(value executions "$counts")" -eq \
    "$(($(value completed "$counts") + $(value cut_short "$counts") + $(value fenced "$counts")))"
check "workers were killed at least 5 times (kills=$kills)" test "$kills" -ge 5
faults_finish "$counts kills=$kills bad_answers=$bad_answers"
