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

log() { echo "ensure-rabbitmq: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

port_open() {
    # A connect to 127.0.0.1 is refused at once when nobody listens; the
    # timeout only guards against a wedged listener.
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null
}

running() {
    echo "rabbitmq: running"
    exit 0
}

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update
        APT_UPDATED=1
    fi
}

# Keep the package's maintainer scripts from starting the service themselves
# (invoke-rc.d fails without an init system, which would leave the package
# half-configured): a temporary policy-rc.d answering 101 = "action denied",
# which invoke-rc.d treats as success. An existing policy-rc.d (docker images
# ship one) is left as it is. We start the broker ourselves afterwards.
POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_ADDED=0
START_OUT=""
remove_policy() {
    if [ "$POLICY_ADDED" -eq 1 ]; then
        as_root rm -f "$POLICY_RC_D" || true
        POLICY_ADDED=0
    fi
}
cleanup() {
    remove_policy
    if [ -n "$START_OUT" ]; then rm -f "$START_OUT"; fi
}
trap cleanup EXIT
deny_service_starts() {
    if [ ! -e "$POLICY_RC_D" ]; then
        printf '#!/bin/sh\n# temporary, added by ensure-rabbitmq.sh\nexit 101\n' \
            | as_root tee "$POLICY_RC_D" >/dev/null
        as_root chmod 0755 "$POLICY_RC_D"
        POLICY_ADDED=1
    fi
}

install_rabbitmq() {
    apt_update_once
    deny_service_starts
    log "installing rabbitmq-server (Debian package)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server; then
        # Most likely the postinst's own start attempt failed; finish the
        # configuration and judge by what is actually installed.
        log "apt-get install reported an error; trying to finish configuration"
        as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a || true
    fi
    remove_policy
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
