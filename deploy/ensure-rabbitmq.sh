#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on 127.0.0.1:5672. Idempotent.
#
#   deploy/ensure-rabbitmq.sh
#
# - Port already open            -> prints "rabbitmq: running", exits 0, touches nothing.
# - rabbitmq-server not installed -> apt-get update (once) + apt-get install rabbitmq-server.
# - Then starts the node with `rabbitmq-server -detached` (never systemctl: the
#   target machines run no systemd) and waits up to RABBITMQ_WAIT_SECONDS (120)
#   for the port AND `rabbitmqctl await_startup`. On failure it exits non-zero
#   with the tail of /var/log/rabbitmq/*.log.
#
# Runs as root; when not root, uses sudo if it exists (only for what needs root).
# No nc/curl needed: port checks use bash's /dev/tcp.
set -euo pipefail

HOST=127.0.0.1
PORT=5672
WAIT_SECONDS=${RABBITMQ_WAIT_SECONDS:-120}
# Debian puts the RabbitMQ tools in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

ENSURE=ensure-rabbitmq
. "$(dirname "$0")/debian.sh"

port_open() {
    # A connect to 127.0.0.1 is refused at once when nobody listens; the
    # timeout only guards against a wedged listener.
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null
}

running() {
    echo "rabbitmq: running"
    exit 0
}

START_OUT=""

install_rabbitmq() {
    apt_install rabbitmq-server  # we start the broker ourselves afterwards (deploy/debian.sh keeps apt from it)
    command -v rabbitmq-server >/dev/null 2>&1 || die "rabbitmq-server is still not installed"
}

show_logs() {
    log "---- tail of RabbitMQ logs ----"
    local f
    for f in /var/log/rabbitmq/*.log /var/log/rabbitmq/startup_log /var/log/rabbitmq/startup_err; do
        if as_root test -s "$f" 2>/dev/null; then
            echo "==> $f <==" >&2
            as_root tail -n 40 "$f" >&2 || true
        fi
    done
}

# An Erlang node is named rabbit@<short hostname>; if that hostname does not
# resolve (seen in some containers) the node cannot start. Pin the node name
# to localhost in that case, unless someone already chose a name.
ensure_resolvable_nodename() {
    local env_conf=/etc/rabbitmq/rabbitmq-env.conf host
    [ -n "${RABBITMQ_NODENAME:-}" ] && return 0
    if [ -f "$env_conf" ] && grep -Eq '^[[:space:]]*(export[[:space:]]+)?(RABBITMQ_)?NODENAME=' "$env_conf"; then
        return 0
    fi
    host=$(hostname -s 2>/dev/null || hostname)
    if ! getent hosts "$host" >/dev/null 2>&1; then
        log "hostname '$host' does not resolve; setting NODENAME=rabbit@localhost in $env_conf"
        as_root mkdir -p /etc/rabbitmq
        echo "NODENAME=rabbit@localhost" | as_root tee -a "$env_conf" >/dev/null
    fi
}

node_alive() {
    as_root timeout 20 rabbitmq-diagnostics -q ping >/dev/null 2>&1
}

wait_ready() {
    local deadline=$((SECONDS + WAIT_SECONDS)) remaining
    log "waiting up to ${WAIT_SECONDS}s for $HOST:$PORT and rabbitmqctl await_startup"
    while :; do
        remaining=$((deadline - SECONDS))
        if [ "$remaining" -le 0 ]; then
            if [ -n "$START_OUT" ] && [ -s "$START_OUT" ]; then
                log "---- output of rabbitmq-server -detached ----"
                cat "$START_OUT" >&2
            fi
            show_logs
            die "RabbitMQ did not come up on $HOST:$PORT within ${WAIT_SECONDS}s"
        fi
        if port_open; then
            [ "$remaining" -gt 30 ] && remaining=30
            # await_startup fails fast while the node is not reachable yet,
            # hence the loop; its own --timeout bounds a slow boot.
            if as_root timeout $((remaining + 5)) rabbitmqctl -q await_startup --timeout "$remaining" >/dev/null 2>&1; then
                return 0
            fi
        fi
        sleep 1
    done
}

main() {
    if port_open; then
        running
    fi

    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        install_rabbitmq
    fi

    if port_open; then
        log "port $PORT opened meanwhile (started by the package or another run)"
    elif node_alive; then
        log "a RabbitMQ node is already booting; not starting another"
    else
        ensure_resolvable_nodename
        log "starting: rabbitmq-server -detached"
        # The node detaches; keep its launcher off our stdout so a caller
        # piping this script's output is never held open by the daemon.
        START_OUT=$(mktemp)
        CLEANUP_FILES+=("$START_OUT")
        if ! as_root rabbitmq-server -detached </dev/null >"$START_OUT" 2>&1; then
            cat "$START_OUT" >&2
            show_logs
            die "rabbitmq-server -detached failed"
        fi
    fi

    wait_ready
    running
}

main "$@"
