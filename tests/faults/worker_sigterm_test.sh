#!/usr/bin/env bash
# Fault injection 3: SIGTERM to every kiln-worker at once while jobs run. Each worker must exit
# by itself with status 0 within its grace period (1 s) plus the recorder's 10 s, having handed
# back what it could not finish: no job may be left running once they are gone (the leases are
# 30 s, so no reaper could have cleaned up after them), and none may have failed or lost an
# attempt (a released attempt is not counted). Then the workers come back and every job must
# complete exactly once.
#
#   tests/faults/worker_sigterm_test.sh BUILD_DIR
#
# A fifth of the jobs run 3 s, longer than the grace period: those are released; the others
# run 150 ms and finish within it. Counts: see count_jobs in lib.sh; also
#   left_running  jobs still running once every worker had exited
#   released      runs the workers handed back ("job finished" with outcome released)
#   recounted     jobs whose attempts exceed 1 (a released attempt was counted)
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JOBS=${KILN_FAULTS_JOBS:-300}
faults_init 3 worker-sigterm "${1:-}"
faults_start_stack

worker_args=(--types test.controlled --slots 3 --grace-seconds 1 --lease-seconds 30)
workers=(kiln-worker-1 kiln-worker-2 kiln-worker-3)

# Every job is queued before a worker starts: the 3 s jobs are spread through the queue, so
# some are running when the SIGTERM comes. (Workers that ran while slow posters on a loaded
# host were still creating jobs could finish every 3 s job before the last was created.)
log "$FAULTS_NAME: creating $JOBS jobs"
long=$((JOBS / 5))
start_posting 3 $((JOBS - long)) "$FAULTS_OUT/short" -H 'Content-Type: application/json' \
    --data '{"type":"test.controlled","params":{"sleep_ms":150}}'
start_posting 1 "$long" "$FAULTS_OUT/long" -H 'Content-Type: application/json' \
    --data '{"type":"test.controlled","params":{"sleep_ms":3000}}'
deadline=$(($(now_us) + 120 * 1000000))
until posters_done; do
    (($(now_us) < deadline)) || die "creating $JOBS jobs took over 120 s"
    sleep 0.1
done
for w in "${workers[@]}"; do
    start_worker "$w" "${worker_args[@]}"
done

# SIGTERM once some jobs have completed and 3 s jobs, which outlast the grace period, run.
deadline=$(($(now_us) + 120 * 1000000))
until (($(sql "SELECT COUNT(*) FROM jobs WHERE status = 'completed'") >= JOBS / 5)) &&
    (($(sql "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND params LIKE '%3000%'") >= 2)); do
    (($(now_us) < deadline)) || die "the workers never got busy: $(sql "SELECT status, COUNT(*) FROM jobs GROUP BY status")"
    sleep 0.1
done
before=$(sql "SELECT CONCAT(status, '=', COUNT(*)) FROM jobs GROUP BY status" | tr '\n' ' ')
log "$FAULTS_NAME: SIGTERM to every worker ($before)"
for w in "${workers[@]}"; do
    signal_worker "$w" TERM
done
exits=()
for w in "${workers[@]}"; do
    wait_worker_exit "$w" 30
    exits+=("$FAULTS_EXIT")
    check "$w exited with status 0 within 30 s after SIGTERM (got $FAULTS_EXIT)" test "$FAULTS_EXIT" = 0
done
left_running=$(sql "SELECT COUNT(*) FROM jobs WHERE status = 'running'")
dead=$(sql "SELECT COUNT(*) FROM jobs WHERE status IN ('failed', 'cancelled')")
after=$(sql "SELECT CONCAT(status, '=', COUNT(*)) FROM jobs GROUP BY status" | tr '\n' ' ')
log "$FAULTS_NAME: every worker exited (${exits[*]}): $after"

for w in "${workers[@]}"; do
    start_worker "$w-again" "${worker_args[@]}"
done
drain_deadline=$(($(now_us) + 120 * 1000000))
while (($(sql "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')") > 0)); do
    (($(now_us) < drain_deadline)) || break
    sleep 0.5
done
for w in "${workers[@]}"; do
    stop_process "$w-again" 30
done

acknowledged_ids "$FAULTS_OUT/short" >"$FAULTS_OUT/acknowledged"
acknowledged_ids "$FAULTS_OUT/long" >>"$FAULTS_OUT/acknowledged"
bad_answers=$( (answers "$FAULTS_OUT/short" && answers "$FAULTS_OUT/long") | awk '$1 != 201' | wc -l)
sql "SELECT id, status, attempts FROM jobs" >"$FAULTS_OUT/jobs.tsv"
counts=$(count_jobs "$FAULTS_OUT/acknowledged" "$FAULTS_OUT/jobs.tsv" "$KILN_VAR"/log/kiln-worker-*.log)
released=$(awk '$3 == "released"' "$FAULTS_OUT/finished" | wc -l)
recounted=$(awk '$3 > 1' "$FAULTS_OUT/jobs.tsv" | wc -l)
unrecorded=$(cat "$KILN_VAR"/log/kiln-worker-*.log | grep -c '"msg":"outcomes not recorded' || true)

check "every request got 201 (bad_answers=$bad_answers)" test "$bad_answers" -eq 0
check "$JOBS jobs created" test "$(value created "$counts")" -eq "$JOBS"
check "no job left running after the workers stopped" test "$left_running" -eq 0
check "no job failed or cancelled by the stop" test "$dead" -eq 0
check "no job lost" test "$(value lost "$counts")" -eq 0
check "no job duplicated" test "$(value duplicated "$counts")" -eq 0
check "no completed job without a finished run" test "$(value phantom "$counts")" -eq 0
check "every job row was acknowledged" test "$(value unacknowledged_rows "$counts")" -eq 0
check "no released attempt counted (recounted=$recounted)" test "$recounted" -eq 0
check "no outcome dropped at exit (unrecorded=$unrecorded)" test "$unrecorded" -eq 0
check "some runs were handed back (released=$released)" test "$released" -gt 0
faults_finish "$counts left_running=$left_running released=$released recounted=$recounted" \
    "bad_answers=$bad_answers"
