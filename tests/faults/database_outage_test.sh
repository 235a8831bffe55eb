#!/usr/bin/env bash
# Fault injection 2: MariaDB is stopped for 10 s and restarted while 1,000 jobs are created and
# processed by two kiln-workers.
#
#   tests/faults/database_outage_test.sh BUILD_DIR
#
# Four clients upload jobs (a small text file each) until each has its share acknowledged with
# 201, and a fifth GETs /health and a job; every answer is recorded. Checked:
#   - every answer is 201 (200 for the reads) or a 503 problem with code "unavailable" and
#     Retry-After; nothing else, and no request hangs (curl gives up after 5 s: status 000);
#     and the outage was seen (some 503s);
#   - every 201-acknowledged job ends completed (lost), and no job completed twice (duplicated;
#     see count_jobs in lib.sh);
#   - no job row without its files (rows_without_files): a creation whose COMMIT was cut by the
#     stop may have been committed although kiln-api answered 503 (unacknowledged_rows, allowed:
#     the outcome of such a request is unknown to the API), but its files must stay;
#   - jobs running when the database went down finished during the outage and their outcomes
#     were recorded once it was back (deferred: the workers' "cannot record outcomes yet");
#   - kiln-api and the workers never crashed, and kiln-api serves again once MariaDB is back;
#   - after a second restart of MariaDB while kiln-api is idle, the first 40 requests are all
#     served (stale_503: answered from a connection that died with the old server).
# Timings are printed: slowest 503 (max_503_ms), 503s slower than 1 s (slow_503), 503s to
# requests started more than 2 s after MariaDB answered again (late_503), and the time from
# then to the first 201 (recovery_ms).
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JOBS=${KILN_FAULTS_JOBS:-1000}
OUTAGE_SECONDS=10
faults_init 2 database-outage "${1:-}"
faults_start_stack

# read_loop OUT STOP_FILE JOB: GETs /health and the job until STOP_FILE exists, one line per
# request to OUT: STATUS SECONDS PATH END_US.
read_loop() {
    local out=$1 stop=$2 job=$3 path reply
    while [[ ! -e $stop ]]; do
        for path in /health "/api/v1/jobs/$job"; do
            reply=$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 \
                -H "Authorization: Bearer $FAULTS_TOKEN" "$KILN_URL$path" 2>/dev/null) || true
            printf '%s %s %s %s\n' "${reply%% *}" "${reply#* }" "$path" "$(now_us)" >>"$out"
        done
        sleep 0.1
    done
}

# post_one BODY: creates one job, prints its id; fails unless the answer is 201.
post_one() {
    local body
    body=$(curl -sS --max-time 10 -H "Authorization: Bearer $FAULTS_TOKEN" \
        -H 'Content-Type: application/json' --data "$1" -w '\n%{http_code}' \
        "$KILN_URL/api/v1/jobs") || return 1
    [[ ${body##*$'\n'} == 201 && $body =~ \"id\":\"([0-9a-z]+)\" ]] || return 1
    printf '%s\n' "${BASH_REMATCH[1]}"
}

api_pid=$(pid_of kiln-api)
worker_args=(--types test.controlled --slots 4 --lease-seconds 60 --grace-seconds 5)
start_worker kiln-worker-1 "${worker_args[@]}"
start_worker kiln-worker-2 "${worker_args[@]}"
worker_pids=("$(pid_of kiln-worker-1)" "$(pid_of kiln-worker-2)")

probe=$(post_one '{"type":"test.controlled"}') || die "cannot create a job"
stop_reading=$FAULTS_OUT/stop-reading
: >"$FAULTS_OUT/reads"
read_loop "$FAULTS_OUT/reads" "$stop_reading" "$probe" 9>&- &
FAULTS_BACKGROUND+=("$!")

log "$FAULTS_NAME: creating $JOBS jobs"
# Uploads, so that a creation cut by the outage can also show what becomes of its files.
upload=$FAULTS_OUT/input.txt
awk 'BEGIN { for (i = 0; i < 64; i++) printf "kiln fault injection line %04d\n", i }' >"$upload"
start_posting 4 "$JOBS" "$FAULTS_OUT/created" -F type=test.controlled -F 'params={"sleep_ms":100}' \
    -F "file=@$upload;filename=input.txt;type=text/plain"
deadline=$(($(now_us) + 120 * 1000000))
until (($(acknowledged_ids "$FAULTS_OUT/created" | wc -l) >= JOBS * 3 / 10)); do
    (($(now_us) < deadline)) || die "fewer than $((JOBS * 3 / 10)) jobs created in 120 s"
    sleep 0.1
done

# Jobs that finish while the database is down: premium so that they are claimed next, 3 s long.
long=()
for i in 1 2 3 4; do
    id=$(post_one '{"type":"test.controlled","priority":"premium","params":{"sleep_ms":3000}}') ||
        die "cannot create a long job"
    long+=("$id")
done
long_list=$(printf "'%s'," "${long[@]}")
long_list=${long_list%,}
deadline=$(($(now_us) + 60 * 1000000))
until (($(sql "SELECT COUNT(*) FROM jobs WHERE id IN ($long_list) AND status = 'running'") == 4)); do
    (($(now_us) < deadline)) || die "the long jobs did not all start within 60 s"
    sleep 0.05
done

log "$FAULTS_NAME: stopping MariaDB for $OUTAGE_SECONDS s"
t_stop=$(now_us)
stop_process mariadb 60
t_down=$(now_us)
left_ms=$(((t_down + OUTAGE_SECONDS * 1000000 - $(now_us)) / 1000))
((left_ms <= 0)) || sleep "$((left_ms / 1000)).$(printf %03d $((left_ms % 1000)))"
start_mariadb
t_up=$(now_us)
log "$FAULTS_NAME: MariaDB is back after $(((t_up - t_stop) / 1000)) ms"

deadline=$(($(now_us) + 180 * 1000000))
until posters_done; do
    (($(now_us) < deadline)) || break
    sleep 0.2
done
check "the posters finished within 180 s of the outage" posters_done
deadline=$(($(now_us) + 180 * 1000000))
while (($(sql "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')") > 0)); do
    (($(now_us) < deadline)) || break
    sleep 0.5
done
touch "$stop_reading"

# A restart while kiln-api is idle: every API thread holds a connection from before, and none
# learns of the outage from a request made during it. Once MariaDB answers again, every request
# must be served: a thread must not answer 503 from its dead connection.
get_job() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $FAULTS_TOKEN" \
        "$KILN_URL/api/v1/jobs/$probe" 2>/dev/null || true
}
warmers=()
for i in $(seq 48); do
    get_job >/dev/null &
    warmers+=("$!")
done
for pid in "${warmers[@]}"; do
    wait "$pid" || true
done
log "$FAULTS_NAME: restarting MariaDB while kiln-api is idle"
stop_process mariadb 60
start_mariadb
idle_restart=$(for i in $(seq 40); do get_job; printf ' '; done)
stale_503=$( (grep -o 503 <<<"$idle_restart" || true) | wc -l)
check "every request is served once MariaDB is back after an idle restart ($idle_restart)" \
    test "$stale_503" -eq 0

crashed=0
for pid in "$api_pid" "${worker_pids[@]}"; do
    proc_alive "$pid" || crashed=$((crashed + 1))
done
check "kiln-api kept running (pid $api_pid)" proc_alive "$api_pid"
for w in kiln-worker-1 kiln-worker-2; do
    stop_process "$w" 30
done

# --- What happened -----------------------------------------------------------------------------
acknowledged_ids "$FAULTS_OUT/created" >"$FAULTS_OUT/acknowledged"
printf '%s\n' "${long[@]}" >>"$FAULTS_OUT/acknowledged"
sql "SELECT id, status, attempts FROM jobs WHERE id <> '$probe'" >"$FAULTS_OUT/jobs.tsv"
counts=$(count_jobs "$FAULTS_OUT/acknowledged" "$FAULTS_OUT/jobs.tsv" "$KILN_VAR"/log/kiln-worker-*.log)
answers=$(answers "$FAULTS_OUT/created" | awk -v up="$t_up" '
    { start = $4 - $2 * 1000000 }
    $1 == 201 { ok++; if ($4 > up && (first == "" || $4 < first)) first = $4 }
    $1 == 503 {
        unavailable++
        if ($5 != "ok") malformed++
        if ($2 * 1000 > max) max = $2 * 1000
        if ($2 > 1) slow++
        if (start > up + 2000000) late++
    }
    $1 != 201 && $1 != 503 { other++; if (other <= 5) print "unexpected answer: " $0 > "/dev/stderr" }
    END {
        printf "answers_201=%d answers_503=%d other_answers=%d malformed_503=%d", ok, unavailable, other, malformed
        printf " max_503_ms=%d slow_503=%d late_503=%d recovery_ms=%d\n", max, slow, late, \
            first == "" ? -1 : (first - up) / 1000
    }')
reads=$(awk '
    $1 == 200 { ok++ } $1 == 503 { unavailable++ }
    $1 != 200 && $1 != 503 { other++; if (other <= 5) print "unexpected read answer: " $0 > "/dev/stderr" }
    END { printf "reads_200=%d reads_503=%d other_reads=%d\n", ok, unavailable, other }' "$FAULTS_OUT/reads")
deferred=$(cat "$KILN_VAR"/log/kiln-worker-*.log | grep -c '"msg":"cannot record outcomes yet"' || true)
long_completed=$(sql "SELECT COUNT(*) FROM jobs WHERE id IN ($long_list) AND status = 'completed'")
# The long jobs and the probe are JSON jobs without files: only listed sources are checked.
read -r rows_without_files unlisted orphan_dirs < <(check_sources listed)

check "$JOBS jobs acknowledged with 201" test "$(value answers_201 "$answers")" -eq "$JOBS"
check "only 201 or 503 answers to creation" test "$(value other_answers "$answers")" -eq 0
check "every 503 is an unavailable problem with Retry-After" test "$(value malformed_503 "$answers")" -eq 0
check "the outage was answered with 503" test "$(value answers_503 "$answers")" -gt 0
check "only 200 or 503 answers to reads" test "$(value other_reads "$reads")" -eq 0
check "no acknowledged job lost" test "$(value lost "$counts")" -eq 0
check "no job duplicated" test "$(value duplicated "$counts")" -eq 0
check "no completed job without a finished run" test "$(value phantom "$counts")" -eq 0
check "no job row without its files (rows_without_files=$rows_without_files)" \
    test "$rows_without_files" -eq 0
check "no job's sources hold unlisted files" test "$unlisted" -eq 0
check "the jobs running at the stop completed ($long_completed of 4)" test "$long_completed" -eq 4
check "outcomes were kept through the outage (deferred=$deferred)" test "$deferred" -gt 0
check "no process crashed (crashed=$crashed)" test "$crashed" -eq 0
recovery_ms=$(value recovery_ms "$answers") || recovery_ms=none
check "kiln-api served again within 10 s of MariaDB (recovery_ms=$recovery_ms)" \
    test "$recovery_ms" != none -a "$recovery_ms" -le 10000
faults_finish "$counts $answers $reads deferred=$deferred crashed=$crashed stale_503=$stale_503" \
    "rows_without_files=$rows_without_files orphan_dirs=$orphan_dirs" \
    "outage_ms=$(((t_up - t_stop) / 1000))"
