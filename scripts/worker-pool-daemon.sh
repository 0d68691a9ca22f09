#!/usr/bin/env bash
# Worker pool daemon control: start | stop | restart | status | cleanup
#
# Environment (defaults in brackets):
#   POOL_SIZE [20]  FIFO_DIR [/tmp/cortex/workers]  LOG_DIR [<package>/logs]
#   PID_FILE [/tmp/cortex/worker-pool.pid]  SOCKET_PATH [worker-pool.sock beside PID_FILE]
#   MIN_WORKERS, MAX_WORKERS, HEARTBEAT_INTERVAL, TASK_TIMEOUT, LOAD_BALANCING,
#   AUTO_RESTART, AUTO_SCALE, TRANSPORT, WORKER_SCRIPT, SHUTDOWN_TIMEOUT, METRICS_LOG_INTERVAL_MS,
#   METRICS_PORT, METRICS_HOST, LOG_FORMAT, LOG_LEVEL (read by scripts/daemon.js)
#   STOP_TIMEOUT [30]  seconds `stop` waits for a graceful exit before SIGKILL
#   NODE [node]        the Node.js binary
set -u

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACKAGE_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
DAEMON_JS="$SCRIPT_DIR/daemon.js"
CLI_JS="$PACKAGE_DIR/bin/worker-pool.js"

export POOL_SIZE="${POOL_SIZE:-20}"
export FIFO_DIR="${FIFO_DIR:-/tmp/cortex/workers}"
export LOG_DIR="${LOG_DIR:-$PACKAGE_DIR/logs}"
export PID_FILE="${PID_FILE:-/tmp/cortex/worker-pool.pid}"
export SOCKET_PATH="${SOCKET_PATH:-$(dirname "$PID_FILE")/worker-pool.sock}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
NODE="${NODE:-node}"
LOG_FILE="$LOG_DIR/worker-pool.log"

log() { echo "[worker-pool-daemon] $*"; }
err() { echo "[worker-pool-daemon] $*" >&2; }

# The PID recorded in PID_FILE, if the file holds a number.
read_pid() {
    local pid=""
    [ -f "$PID_FILE" ] && read -r pid < "$PID_FILE" 2>/dev/null
    case "$pid" in
        ''|*[!0-9]*) return 1 ;;
    esac
    echo "$pid"
}

# True when $1 is a live (not zombie) process, whatever it runs.
is_live_pid() {
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 1
    [ -r "/proc/$pid/stat" ] || return 0
    local stat state
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    state="${stat##*) }"
    state="${state%% *}"
    [ "$state" != "Z" ]
}

# True when $1 is a live (not zombie) process running our daemon.js.
is_daemon_pid() {
    local pid="$1"
    is_live_pid "$pid" || return 1
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "daemon.js"
        return $?
    fi
    ps -p "$pid" -o args= 2>/dev/null | grep -q "daemon.js"
}

# Sets PID and succeeds when the daemon of PID_FILE is running.
is_running() {
    PID="$(read_pid)" || return 1
    is_daemon_pid "$PID"
}

remove_stale_files() {
    if [ -f "$PID_FILE" ] && ! is_running; then
        log "Removing stale PID file $PID_FILE"
        rm -f "$PID_FILE"
    fi
}

start() {
    if is_running; then
        err "Worker pool daemon is already running (PID $PID)"
        return 1
    fi
    remove_stale_files
    mkdir -p "$LOG_DIR" "$(dirname "$PID_FILE")" "$(dirname "$SOCKET_PATH")" || return 1
    [ -d "$FIFO_DIR" ] || mkdir -p -m 700 "$FIFO_DIR" || return 1
    # With LOG_FORMAT=json stdout carries only the daemon's JSON lines.
    if [ "${LOG_FORMAT:-text}" = "json" ]; then
        err "Starting worker pool daemon (pool size $POOL_SIZE, socket $SOCKET_PATH, log $LOG_FILE)"
    else
        log "Starting worker pool daemon (pool size $POOL_SIZE, socket $SOCKET_PATH, log $LOG_FILE)"
    fi
    # Foreground, as the original: the daemon's output goes to the terminal and to the
    # log file. tee ignores INT/TERM so that it records the graceful shutdown after a
    # Ctrl-C and ends when the daemon closes its output.
    set -o pipefail
    "$NODE" "$DAEMON_JS" 2>&1 | ( trap '' INT TERM; exec tee -a "$LOG_FILE" )
    local status=("${PIPESTATUS[@]}")
    set +o pipefail
    return "${status[0]}"
}

stop() {
    if ! is_running; then
        log "Worker pool daemon is not running"
        remove_stale_files
        return 0
    fi
    local pid="$PID"
    log "Stopping worker pool daemon (PID $pid)..."
    kill -TERM "$pid" 2>/dev/null
    local waited=0
    local limit=$((STOP_TIMEOUT * 10))
    while is_daemon_pid "$pid"; do
        if [ "$waited" -ge "$limit" ]; then
            err "No graceful exit after ${STOP_TIMEOUT}s; killing PID $pid"
            kill -KILL "$pid" 2>/dev/null
            # The workers die with it (parent-death signal); clean up what it left.
            # Wait for the process itself to be gone: one being killed loses its
            # command line (so is_daemon_pid already fails) while its threads still
            # exit, and "killed" must mean gone.
            local i=0
            while is_live_pid "$pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
            rm -f "$PID_FILE" "$SOCKET_PATH"
            log "Worker pool daemon killed"
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    # A clean exit removes both; these only matter if it died some other way.
    if [ "$(read_pid)" = "$pid" ]; then rm -f "$PID_FILE"; fi
    [ -S "$SOCKET_PATH" ] && ! is_running && rm -f "$SOCKET_PATH"
    log "Worker pool daemon stopped"
    return 0
}

status() {
    if is_running; then
        log "Worker pool daemon is running (PID $PID)"
        if [ -f "$CLI_JS" ]; then
            "$NODE" "$CLI_JS" status --socket "$SOCKET_PATH" || true
        fi
        return 0
    fi
    if [ -f "$PID_FILE" ]; then
        log "Worker pool daemon is not running (stale PID file $PID_FILE)"
    else
        log "Worker pool daemon is not running"
    fi
    return 1
}

cleanup() {
    if is_running; then
        err "Worker pool daemon is running (PID $PID); stop it first"
        return 1
    fi
    log "Cleaning up"
    rm -f "$PID_FILE"
    [ -S "$SOCKET_PATH" ] && rm -f "$SOCKET_PATH"
    if [ -d "$FIFO_DIR" ]; then
        find "$FIFO_DIR" -maxdepth 1 -type p \( -name 'worker-*-in.fifo' -o -name 'worker-*-out.fifo' \) -exec rm -f {} + 2>/dev/null
        # The FIFO transport's lock, unless a live pool holds it.
        local lock="$FIFO_DIR/.worker-pool.lock" lockpid=""
        if [ -f "$lock" ]; then
            read -r lockpid < "$lock" 2>/dev/null
            case "$lockpid" in
                ''|*[!0-9]*) rm -f "$lock" ;;
                *) kill -0 "$lockpid" 2>/dev/null || rm -f "$lock" ;;
            esac
        fi
    fi
    log "Removed PID file, socket and pipes"
    return 0
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart)
        stop || exit $?
        start
        ;;
    status) status ;;
    cleanup) cleanup ;;
    *)
        echo "Usage: $0 {start|stop|restart|status|cleanup}" >&2
        exit 2
        ;;
esac
exit $?
