#!/usr/bin/env bash
# Fault injection 4: kiln-api is SIGKILLed while 50 uploads of 3 MiB each are in flight
# (rate-limited clients from 0.25 to 2.5 MB/s, so that some finish first and most are cut off),
# restarted, and `kilnctl purge --orphans-older-than 0s` sweeps what the dead process left.
#
#   tests/faults/api_sigkill_test.sh BUILD_DIR
#
# Checked, before the sweep: no job row without its files (the API publishes the files before
# it inserts the row). After the sweep:
#   lost        a 201-acknowledged upload without a row, or a row whose sources/{job}/ does not
#               hold exactly its job_files (name, size, SHA-256)
#   duplicated  a sources/{job}/ holding files its row does not list
#   orphans     sources/{job}/ without a row (must be 0), and tmp/ must be empty
# and kiln-api accepts uploads again, and a worker completes every job with a row (completed
# counts them, with the one uploaded after the restart). The counts before the sweep show what
# the kill left behind.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UPLOADS=${KILN_FAULTS_UPLOADS:-50}
faults_init 4 api-sigkill "${1:-}"
faults_start_stack

# Plain text (test.noop accepts text/plain up to 10 MiB), the same for every upload.
payload=$FAULTS_OUT/payload.txt
awk 'BEGIN { for (i = 0; i < 49152; i++) printf "%063d\n", i }' >"$payload"  # 3 MiB

# upload N RATE: one multipart upload; writes "STATUS ID|-" to uploads/N.
upload() {
    local n=$1 rate=$2 status body
    body=$(curl -sS --max-time 90 --limit-rate "$rate" -H "Authorization: Bearer $FAULTS_TOKEN" \
        -F type=test.noop -F "file=@$payload;filename=upload-$n.txt;type=text/plain" \
        -w '\n%{http_code}' "$KILN_URL/api/v1/jobs" 2>/dev/null) || true
    status=${body##*$'\n'}
    if [[ $status == 201 && $body =~ \"id\":\"([0-9a-z]+)\" ]]; then
        printf '201 %s\n' "${BASH_REMATCH[1]}" >"$FAULTS_OUT/uploads/$n"
    else
        printf '%s -\n' "${status:-000}" >"$FAULTS_OUT/uploads/$n"
    fi
}

mkdir -p "$FAULTS_OUT/uploads"
log "$FAULTS_NAME: $UPLOADS concurrent uploads"
clients=()
for ((n = 0; n < UPLOADS; n++)); do
    # 3 MiB at 2.5 MB/s takes 1.3 s; at 0.25 MB/s 13 s.
    upload "$n" "$((250 + (n * 2250 / UPLOADS)))K" 9>&- &
    clients+=("$!")
    FAULTS_BACKGROUND+=("$!")
done
sleep 3
api_pid=$(pid_of kiln-api)
in_tmp=$(find "$KILN_STORAGE/tmp" -mindepth 1 -maxdepth 1 | wc -l)
log "$FAULTS_NAME: SIGKILL to kiln-api (pid $api_pid) with $in_tmp uploads being staged"
disown "$api_pid" 2>/dev/null || true
kill -KILL "$api_pid"
deadline=$(($(now_us) + 10 * 1000000))
while proc_alive "$api_pid" && (($(now_us) < deadline)); do sleep 0.05; done
proc_alive "$api_pid" && die "kiln-api (pid $api_pid) survived SIGKILL for 10 s"

for pid in "${clients[@]}"; do
    wait "$pid" 2>/dev/null || true
done
read -r before_rows_without_files before_unlisted before_orphans < <(check_sources all)
staging_before=$(find "$KILN_STORAGE/tmp" -mindepth 1 -maxdepth 1 | wc -l)

start_api
purged=$("$KILN_KILNCTL" --config "$KILN_CONF" purge --orphans-older-than 0s) ||
    die "kilnctl purge failed"
log "$FAULTS_NAME: kilnctl purge: $purged"
read -r rows_without_files unlisted orphans < <(check_sources all)
tmp_left=$(find "$KILN_STORAGE/tmp" -mindepth 1 -maxdepth 1 | wc -l)

# The restarted kiln-api takes uploads again, and every job that has a row runs to completion
# (test.noop does not read its sources; what matters is that no row is stuck).
upload after 10M
after=$(<"$FAULTS_OUT/uploads/after")
start_worker kiln-worker-1 --types test.noop --slots 2 --grace-seconds 2
deadline=$(($(now_us) + 60 * 1000000))
while (($(sql "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')") > 0)); do
    (($(now_us) < deadline)) || break
    sleep 0.2
done
stop_process kiln-worker-1 30
completed=$(sql "SELECT COUNT(*) FROM jobs WHERE status = 'completed'")

cat "$FAULTS_OUT"/uploads/[0-9]* >"$FAULTS_OUT/answers"
acknowledged=$(awk '$1 == 201' "$FAULTS_OUT/answers" | wc -l)
refused=$(awk '$1 != 201' "$FAULTS_OUT/answers" | wc -l)
lost_acknowledged=$(awk '$1 == 201 { print $2 }' "$FAULTS_OUT/answers" | sort |
    comm -23 - "$FAULTS_OUT/rows" | wc -l)
rows=$(wc -l <"$FAULTS_OUT/rows")
lost=$((lost_acknowledged + rows_without_files))

check "$UPLOADS uploads answered" test "$(wc -l <"$FAULTS_OUT/answers")" -eq "$UPLOADS"
check "some uploads were cut off by the kill (refused=$refused)" test "$refused" -gt 0
check "no job row without its files before the sweep" test "$before_rows_without_files" -eq 0
check "no acknowledged upload without a row" test "$lost_acknowledged" -eq 0
check "no job row without its files" test "$rows_without_files" -eq 0
check "no unlisted files in a job's sources" test "$unlisted" -eq 0
check "no sources directory without a row after the sweep" test "$orphans" -eq 0
check "tmp/ is empty after the sweep" test "$tmp_left" -eq 0
check "kiln-api takes uploads again (got ${after% *})" test "${after% *}" = 201
check "every job completed ($completed of $((rows + 1)))" test "$completed" -eq $((rows + 1))
faults_finish "uploads=$UPLOADS created=$acknowledged completed=$completed lost=$lost" \
    "duplicated=$unlisted refused=$refused rows=$rows" \
    "before_sweep: orphan_dirs=$before_orphans staging=$staging_before" \
    "rows_without_files=$before_rows_without_files unlisted=$before_unlisted;" \
    "after_sweep: orphan_dirs=$orphans tmp=$tmp_left rows_without_files=$rows_without_files"
