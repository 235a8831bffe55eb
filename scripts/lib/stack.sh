# shellcheck shell=bash
# Starting, watching and stopping kiln's local stack (MariaDB, kiln-api, kiln-workers, nginx),
# all under one directory $KILN_VAR. Sourced, not run; call stack_init first.
#
# Layout:   $KILN_VAR/kiln.toml         config of the binaries (scripts/lib/config.sh)
#           $KILN_VAR/log/NAME.log      stdout+stderr of process NAME
#           $KILN_VAR/run/NAME.pid      its pid; each process leads its own session (setsid)
#           $KILN_VAR/run/*.sock        MariaDB's and kiln-api's unix sockets
#           $KILN_VAR/mysql, storage/, nginx/, tmp/
# NAME is one of mariadb, kiln-api, kiln-worker-N, nginx.

# stack_init VAR PORT BUILD_DIR: the paths and URL every other function uses.
stack_init() {
    KILN_VAR=$1
    KILN_PORT=$2
    KILN_BUILD=$3
    if [[ ! $KILN_PORT =~ ^[0-9]+$ ]] || ((KILN_PORT < 1 || KILN_PORT > 65535)); then
        die "port must be a number in 1..65535, not '$KILN_PORT'"
    fi
    KILN_URL=http://127.0.0.1:$KILN_PORT
    KILN_CONF=$KILN_VAR/kiln.toml
    KILN_DB_DATADIR=$KILN_VAR/mysql
    KILN_DB_SOCKET=$KILN_VAR/run/mysqld.sock
    KILN_API_SOCKET=$KILN_VAR/run/kiln-api.sock
    KILN_STORAGE=$KILN_VAR/storage
    KILN_WAKEUP_DIR=$KILN_VAR/run/wakeup
    KILN_NGINX_CONF=$KILN_VAR/nginx/nginx.conf
    KILN_KILNCTL=$KILN_BUILD/ctl/kilnctl
    KILN_API_BIN=$KILN_BUILD/fcgi/kiln-api
    KILN_WORKER_BIN=$KILN_BUILD/worker/kiln-worker
    # A unix socket path must fit sockaddr_un.sun_path (108 bytes with the NUL); a longer one
    # fails deep inside mariadbd or libfcgi with a confusing message.
    local sock
    for sock in "$KILN_DB_SOCKET" "$KILN_API_SOCKET"; do
        ((${#sock} <= 107)) || die "socket path too long for a unix socket (${#sock} > 107): $sock"
    done
}

# Serialises start-up and stop of one stack between concurrent scripts: stack_lock FILE SECONDS
# fails when another script still holds FILE after SECONDS. fd 9 holds the lock; start_process
# closes it in the children so that they do not keep it.
stack_lock() {
    mkdir -p "$(dirname "$1")"
    exec 9>>"$1"
    flock -w "$2" 9
}

stack_unlock() {
    exec 9>&-
}

# --- Processes -------------------------------------------------------------------------------

# Alive and not a zombie: an exited child of an init that reaps lazily still answers `kill -0`.
proc_alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# Whether any live process is in process group $1 (a leader's orphans, nginx's workers,
# converters a worker started), read from /proc because `kill -0 -PGID` counts zombies too.
group_alive() {
    local f stat state pgrp
    for f in /proc/[0-9]*/stat; do
        { read -r stat <"$f"; } 2>/dev/null || continue
        read -r state _ pgrp _ <<<"${stat##*) }"
        [[ $pgrp == "$1" && $state != Z ]] && return 0
    done
    return 1
}

# Whether pid $1 is one of this stack's processes and not an unrelated process that reused the
# pid of a stale pid file: every process of the stack names a path of $KILN_VAR on its command
# line (nginx keeps its arguments in its process title).
stack_owns() {
    local args
    args=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    args=" $args "
    [[ $args == *" --datadir=$KILN_DB_DATADIR "* || $args == *" $KILN_CONF "* ||
        $args == *" $KILN_NGINX_CONF "* ]]
}

pid_of() {
    local pid
    pid=$(cat "$KILN_VAR/run/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    printf '%s' "$pid"
}

# The boot the pid files belong to: after a reboot none of their pids can be ours.
current_boot() {
    cat /proc/sys/kernel/random/boot_id
}

pid_files_from_this_boot() {
    [[ -f $KILN_VAR/run/boot-id && $(<"$KILN_VAR/run/boot-id") == "$(current_boot)" ]]
}

# start_process NAME COMMAND...: runs COMMAND in the background in a session of its own, so
# that Ctrl-C in the terminal reaches only the script (which then stops the stack in order) and
# a --background stack survives the terminal; its pid goes to run/NAME.pid, its output to
# log/NAME.log.
KILN_STARTED=()
start_process() {
    local name=$1
    shift
    run_detached "$@" </dev/null >>"$KILN_VAR/log/$name.log" 2>&1 9>&- &
    printf '%s\n' "$!" >"$KILN_VAR/run/$name.pid"
    KILN_STARTED+=("$name")
}

# Execs COMMAND in a new session; meant to run as a background job (`run_detached ... &`), whose
# pid is then COMMAND's own: non-interactive bash does not make a background job a group leader,
# so setsid does not need to fork. bash starts background jobs with SIGINT and SIGQUIT ignored,
# and an ignored signal stays ignored across exec down to every grandchild (a converter, a
# test's server): restore the defaults first.
run_detached() {
    trap - INT QUIT
    exec setsid "$@"
}

show_log_tail() {
    local file=$KILN_VAR/log/$1.log
    [[ -f $file ]] || return 0
    {
        printf -- '--- last lines of %s:\n' "$file"
        tail -n "${2:-25}" "$file"
    } >&2 2>/dev/null || true
}

# Dies with the process's log when it has exited: check_running NAME.
check_running() {
    local pid
    if ! pid=$(pid_of "$1") || ! proc_alive "$pid"; then
        show_log_tail "$1"
        die "$1 exited during start-up (log: $KILN_VAR/log/$1.log)"
    fi
}

# wait_group_gone PGID SECONDS: polls, because nothing in bash can wait for the exit of a
# process that is not its child (scripts/stop stops processes an earlier script started).
wait_group_gone() {
    local deadline=$((${EPOCHREALTIME/[.,]/} + $2 * 1000000))
    while group_alive "$1"; do
        ((${EPOCHREALTIME/[.,]/} < deadline)) || return 1
        sleep 0.1
    done
}

# stop_process NAME SECONDS: TERM to the process, then KILL to its whole group once SECONDS have
# passed; the pid file goes in any case.
stop_process() {
    local name=$1 timeout=$2 pid
    local pid_file=$KILN_VAR/run/$name.pid
    [[ -f $pid_file ]] || return 0
    if ! pid=$(pid_of "$name") || ! pid_files_from_this_boot; then
        rm -f "$pid_file"
        return 0
    fi
    if proc_alive "$pid"; then
        if ! stack_owns "$pid"; then
            log "$name: pid $pid is no longer ours (stale pid file): leaving it alone"
            rm -f "$pid_file"
            return 0
        fi
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
    elif group_alive "$pid"; then
        # The leader died but its group lives on (nginx workers after a KILLed master). A group
        # id is not reused while the group has members, so these are the leader's own children.
        log "stopping what is left of $name (process group $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || true
    else
        rm -f "$pid_file"
        return 0
    fi
    if ! wait_group_gone "$pid" "$timeout"; then
        log "$name did not stop within ${timeout}s: killing it"
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait_group_gone "$pid" 5 || log "warning: process group $pid of $name survives SIGKILL"
    fi
    rm -f "$pid_file"
}

# Stops every process with a pid file, in the reverse order of start-up: nginx first so no new
# request arrives, workers (they finish or hand back their jobs), kiln-api, MariaDB last.
stop_stack() {
    local f name others=() workers=()
    for f in "$KILN_VAR"/run/*.pid; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .pid)
        case $name in
            nginx | kiln-api | mariadb) ;;
            kiln-worker-*) workers+=("$name") ;;
            *) others+=("$name") ;;
        esac
    done
    stop_process nginx 10
    for name in "${workers[@]}"; do
        # A worker's [worker] grace_seconds (30 by default) to finish or requeue running jobs.
        stop_process "$name" 40
    done
    for name in "${others[@]}"; do
        stop_process "$name" 10
    done
    stop_process kiln-api 15
    stop_process mariadb 60
    rm -f "$KILN_VAR/run/boot-id" "$KILN_API_SOCKET"
}

# Prints running (every process of a complete stack alive), stale (pid files of a stack that
# crashed or half-started) or stopped (no pid file).
stack_state() {
    local f name pid
    local -A alive=()
    local any=0 dead=0
    for f in "$KILN_VAR"/run/*.pid; do
        [[ -e $f ]] || continue
        any=1
        name=$(basename "$f" .pid)
        if pid_files_from_this_boot && pid=$(pid_of "$name") && proc_alive "$pid" &&
            stack_owns "$pid"; then
            alive[$name]=1
        else
            dead=1
        fi
    done
    if ((any == 0)); then
        echo stopped
    elif ((dead == 0)) && [[ -n ${alive[mariadb]:-} && -n ${alive[kiln-api]:-} &&
        -n ${alive[nginx]:-} ]]; then
        echo running
    else
        echo stale
    fi
}

# Returns once one of the processes this script started exits (naming it), or when a trapped
# signal interrupts the wait: the foreground mode of scripts/run. The processes are this
# shell's children, so `wait -n` blocks on their exit instead of polling. A missing pid file
# counts as an exit: mariadbd removes its own when it shuts down.
wait_for_any_exit() {
    local name pid status
    while :; do
        status=0
        wait -n 2>/dev/null || status=$?
        # 127: no child to wait for (not expected here); do not spin.
        ((status != 127)) || sleep 1
        for name in "${KILN_STARTED[@]}"; do
            if ! pid=$(pid_of "$name") || ! proc_alive "$pid"; then
                show_log_tail "$name"
                log "$name exited (log: $KILN_VAR/log/$name.log)"
                return 1
            fi
        done
    done
}

# --- Start-up --------------------------------------------------------------------------------

prepare_var() {
    mkdir -p "$KILN_VAR"/{log,run,tmp,nginx} "$KILN_STORAGE" "$KILN_WAKEUP_DIR"
    current_boot >"$KILN_VAR/run/boot-id"
}

require_binaries() {
    local bin
    for bin in "$KILN_API_BIN" "$KILN_KILNCTL"; do
        [[ -x $bin ]] || die "$bin is missing (did the build produce it?)"
    done
}

mariadb_client() {
    mariadb --no-defaults --socket="$KILN_DB_SOCKET" --user=root "$@"
}

# wait_for_socket NAME PATH SECONDS: until PATH is a socket, failing early if NAME exits. Polls:
# the socket appears without an event a shell could wait on (no inotify tools on the machine).
wait_for_socket() {
    local name=$1 path=$2 deadline=$((${EPOCHREALTIME/[.,]/} + $3 * 1000000))
    until [[ -S $path ]]; do
        check_running "$name"
        if ((${EPOCHREALTIME/[.,]/} >= deadline)); then
            show_log_tail "$name"
            die "$name did not create $path within $3 s"
        fi
        sleep 0.1
    done
}

# A private MariaDB: its own data directory and socket, no TCP, no system config (--no-defaults
# must come first), running as root, which mariadbd refuses unless told --user=root.
start_mariadb() {
    if [[ ! -d $KILN_DB_DATADIR ]]; then
        log "creating the MariaDB data directory ${KILN_DB_DATADIR#"$KILN_ROOT"/}"
        # Into a temporary name first, so an interrupted install is redone rather than used.
        rm -rf "$KILN_DB_DATADIR.new"
        mariadb-install-db --no-defaults --datadir="$KILN_DB_DATADIR.new" --user=root \
            --auth-root-authentication-method=normal --skip-test-db \
            >>"$KILN_VAR/log/mariadb-install.log" 2>&1 || {
            show_log_tail mariadb-install
            die "mariadb-install-db failed"
        }
        mv "$KILN_DB_DATADIR.new" "$KILN_DB_DATADIR"
    fi
    [[ -d $KILN_DB_DATADIR/mysql ]] ||
        die "$KILN_DB_DATADIR exists but holds no system tables: remove it to start afresh"
    # Nothing of ours runs on this data directory (stack_state said so): a socket file left by a
    # crash would make wait_for_socket return before the server is up.
    rm -f "$KILN_DB_SOCKET" "$KILN_DB_SOCKET.lock"
    log "starting MariaDB"
    # innodb_flush_log_at_trx_commit=1: the job store must survive a crash like production.
    # No binary log: nothing replicates from a dev server. The thread pool serves kiln's many
    # short statements on a few threads (docs/operations.md, MariaDB).
    start_process mariadb mariadbd --no-defaults \
        --datadir="$KILN_DB_DATADIR" \
        --socket="$KILN_DB_SOCKET" \
        --skip-networking \
        --user=root \
        --pid-file="$KILN_VAR/run/mariadb.pid" \
        --log-error="$KILN_VAR/log/mariadb.log" \
        --tmpdir="$KILN_VAR/tmp" \
        --skip-name-resolve \
        --skip-log-bin \
        --innodb-buffer-pool-size=256M \
        --innodb-flush-log-at-trx-commit=1 \
        --thread-handling=pool-of-threads \
        --character-set-server=utf8mb4
    # Crash recovery of a large redo log can take a while; the loop ends early if mariadbd dies.
    wait_for_socket mariadb "$KILN_DB_SOCKET" 120
    mariadb_client -e 'SELECT 1' >/dev/null || die "MariaDB does not answer on $KILN_DB_SOCKET"
}

create_database() {
    mariadb_client -e 'CREATE DATABASE IF NOT EXISTS kiln CHARACTER SET utf8mb4' ||
        die "cannot create the database kiln"
}

migrate_database() {
    log "applying migrations"
    "$KILN_KILNCTL" --config "$KILN_CONF" migrate --migrations "$KILN_ROOT/sql" >&2 ||
        die "kilnctl migrate failed"
}

start_api() {
    log "starting kiln-api"
    # A socket file left by a crash would satisfy wait_for_socket before kiln-api listens.
    rm -f "$KILN_API_SOCKET"
    start_process kiln-api "$KILN_API_BIN" --config "$KILN_CONF"
    wait_for_socket kiln-api "$KILN_API_SOCKET" 30
}

# KILN_WORKERS (default 2) workers, once the worker binary exists in the build.
# KILN_WORKER_CONVERTERS (':'-separated) narrows the definitions these workers load, so tests
# can keep some converters for workers they start themselves.
start_workers() {
    local count=${KILN_WORKERS:-2} i
    [[ $count =~ ^[0-9]+$ ]] || die "KILN_WORKERS must be a number, not '$count'"
    if [[ ! -x $KILN_WORKER_BIN ]]; then
        log "no $KILN_WORKER_BIN yet: starting no worker"
        return 0
    fi
    ((count > 0)) || return 0
    log "starting $count kiln-worker(s)"
    for ((i = 1; i <= count; i++)); do
        if [[ -n ${KILN_WORKER_CONVERTERS:-} ]]; then
            KILN_CONVERTERS=$KILN_WORKER_CONVERTERS \
                start_process "kiln-worker-$i" "$KILN_WORKER_BIN" --config "$KILN_CONF"
        else
            start_process "kiln-worker-$i" "$KILN_WORKER_BIN" --config "$KILN_CONF"
        fi
    done
}

start_nginx() {
    log "starting nginx on $KILN_URL"
    start_process nginx nginx -e "$KILN_VAR/log/nginx.log" -p "$KILN_VAR/nginx/" \
        -c "$KILN_NGINX_CONF"
}

# Until $KILN_URL/health answers 200 through nginx, i.e. the whole request path works; fails
# early when a process of the stack has exited.
wait_for_health() {
    local timeout=${1:-60} f
    local deadline=$((${EPOCHREALTIME/[.,]/} + timeout * 1000000))
    until curl -fsS -o /dev/null --max-time 2 "$KILN_URL/health" 2>/dev/null; do
        for f in "$KILN_VAR"/run/*.pid; do
            [[ -e $f ]] && check_running "$(basename "$f" .pid)"
        done
        if ((${EPOCHREALTIME/[.,]/} >= deadline)); then
            show_log_tail nginx
            show_log_tail kiln-api
            die "$KILN_URL/health did not answer 200 within $timeout s"
        fi
        sleep 0.2
    done
}

# Fails when something already listens on nginx's port: its answers to the health check would
# pass for ours while our nginx failed to bind.
check_port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$KILN_PORT") 2>/dev/null; then
        die "port $KILN_PORT on 127.0.0.1 is in use by another program: stop it, or choose another port with KILN_PORT"
    fi
}

# The whole stack, in dependency order. Arguments: the converter directories of the config.
start_stack() {
    [[ ${KILN_WORKERS:-2} =~ ^[0-9]+$ ]] || die "KILN_WORKERS must be a number, not '$KILN_WORKERS'"
    check_port_free
    prepare_var
    write_kiln_config "$@"
    write_nginx_config
    start_mariadb
    create_database
    migrate_database
    start_api
    start_workers
    start_nginx
    wait_for_health 60
}

# Prints a fresh admin token (kilnctl prints it alone on stdout): new_admin_token OWNER.
new_admin_token() {
    "$KILN_KILNCTL" --config "$KILN_CONF" token create --owner "$1" --admin ||
        die "kilnctl token create failed"
}
