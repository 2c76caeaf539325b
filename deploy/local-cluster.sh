#!/usr/bin/env bash
# A Tally cluster of separate processes on this machine: etcd, a coordinator and N workers.
#
#   deploy/local-cluster.sh start     # starts them in the background, prints how to connect
#   deploy/local-cluster.sh status    # which are running
#   deploy/local-cluster.sh stop      # stops them all and removes the state folder
#
# Settings (environment): WORKERS (3), PORT (coordinator, 50050), ETCD_PORT (2379; its peer
# port is ETCD_PORT+1), CLUSTER (local), DATA_ROOT (the folder SQL may read tables from;
# default: the current directory), STATE_DIR (logs, pids, etcd data, spools; default
# $TMPDIR/tally-local-cluster), TALLY (the tally binary; default: built in release).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
workers="${WORKERS:-3}"
port="${PORT:-50050}"
etcd_port="${ETCD_PORT:-2379}"
cluster="${CLUSTER:-local}"
data_root="${DATA_ROOT:-$PWD}"
state="${STATE_DIR:-${TMPDIR:-/tmp}/tally-local-cluster}"

tally_binary() {
    if [ -n "${TALLY:-}" ]; then
        echo "$TALLY"
        return
    fi
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tally-release}"
    "$root/scripts/install-deps" protoc
    cargo build --release --manifest-path "$root/Cargo.toml" -p tally-client --bin tally >&2
    echo "$CARGO_TARGET_DIR/release/tally"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Waits until a line matching $2 shows up in log $1 (or the process of pid file $3 dies).
wait_for_log() {
    for _ in $(seq 1 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        running "$3" || { echo "local-cluster: $(basename "$3" .pid) exited; see $1" >&2; return 1; }
        sleep 0.1
    done
    echo "local-cluster: timed out waiting for '$2' in $1" >&2
    return 1
}

start() {
    if running "$state/coordinator.pid"; then
        echo "local-cluster: already running (state in $state); stop it first" >&2
        exit 1
    fi
    "$root/scripts/install-deps" etcd
    local tally
    tally="$(tally_binary)"
    mkdir -p "$state"
    rm -f "$state"/*.pid

    etcd --name tally-local --data-dir "$state/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
        --initial-cluster "tally-local=http://127.0.0.1:$((etcd_port + 1))" \
        >"$state/etcd.log" 2>&1 &
    echo $! >"$state/etcd.pid"
    wait_for_log "$state/etcd.log" "ready to serve client requests" "$state/etcd.pid"

    "$tally" coordinator --bind "127.0.0.1:$port" --etcd "127.0.0.1:$etcd_port" \
        --cluster "$cluster" --table-dir "$state/tables" --data-root "$data_root" \
        >"$state/coordinator.log" 2>&1 &
    echo $! >"$state/coordinator.pid"
    wait_for_log "$state/coordinator.log" "leading the cluster" "$state/coordinator.pid"

    for i in $(seq 1 "$workers"); do
        "$tally" worker --etcd "127.0.0.1:$etcd_port" --cluster "$cluster" \
            --spool-dir "$state/spool-$i" >"$state/worker-$i.log" 2>&1 &
        echo $! >"$state/worker-$i.pid"
        wait_for_log "$state/worker-$i.log" "listening" "$state/worker-$i.pid"
    done

    echo "local-cluster: etcd at 127.0.0.1:$etcd_port, coordinator at 127.0.0.1:$port, $workers workers (logs in $state)"
    echo "  $tally sql --coordinator 127.0.0.1:$port -e 'SELECT ...'"
    echo "  $tally workers --coordinator 127.0.0.1:$port"
    echo "  $0 stop"
}

stop() {
    local stopped=0
    # Workers first, then the coordinator, then etcd: each leaves the cluster state cleanly.
    for pid_file in "$state"/worker-*.pid "$state/coordinator.pid" "$state/etcd.pid"; do
        [ -f "$pid_file" ] || continue
        if running "$pid_file"; then
            local pid
            pid="$(cat "$pid_file")"
            kill -TERM "$pid"
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
            stopped=$((stopped + 1))
        fi
        rm -f "$pid_file"
    done
    rm -rf "$state"
    echo "local-cluster: stopped $stopped processes"
}

status() {
    local any=1
    for pid_file in "$state"/etcd.pid "$state"/coordinator.pid "$state"/worker-*.pid; do
        [ -f "$pid_file" ] || continue
        if running "$pid_file"; then
            echo "$(basename "$pid_file" .pid): running (pid $(cat "$pid_file"))"
            any=0
        else
            echo "$(basename "$pid_file" .pid): not running"
        fi
    done
    return $any
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
