#!/usr/bin/env bash
# A RabbitMQ cluster of N nodes (default 3) on ONE machine, next to (and never
# touching) the system broker rabbit@localhost on 127.0.0.1:5672.
#
#   deploy/rabbitmq-cluster.sh up [N]           start N nodes (default 3), join nodes 2..N to node 1 and
#                                               wait until `cluster_status` on node 1 lists all N running.
#                                               Idempotent: an already running cluster is only reported;
#                                               `up` with a bigger N adds nodes, a smaller N is refused.
#                                               On failure: exit 1 with the tail of the node logs.
#   deploy/rabbitmq-cluster.sh down             stop every node of this cluster (`rabbitmqctl stop`, then
#                                               SIGTERM/SIGKILL what remains) and delete its directory.
#   deploy/rabbitmq-cluster.sh status           which nodes run and their AMQP ports; exit 0 when every
#                                               configured node runs (AMQP port open), 1 otherwise.
#   deploy/rabbitmq-cluster.sh ctl I ARGS...    `rabbitmqctl ARGS...` against node I (1-based), with the
#                                               cluster's own cookie: `ctl 2 stop_app`, `ctl 1 add_vhost x`.
#   deploy/rabbitmq-cluster.sh uris [USER:PASS] [VHOST]
#                                               one AMQP URI per node (default guest:guest and vhost "/",
#                                               which gives a trailing "/"; other vhosts are url-encoded):
#                                               amqp://guest:guest@127.0.0.1:5681/
#                                               (before `up`: for the default 3 nodes)
#   deploy/rabbitmq-cluster.sh stop-node I      stop node I's whole Erlang VM (`rabbitmqctl stop`).
#   deploy/rabbitmq-cluster.sh start-node I     start node I again; it rejoins the cluster (its data
#                                               directory keeps the membership) and the command waits
#                                               until node 1 lists it as running. (A node whose VM runs
#                                               but whose app was stopped with `ctl I stop_app` gets a
#                                               `start_app`.)
#
# Environment:
#   SDJ_CLUSTER_PORT  (default 5681) node I listens for AMQP on 127.0.0.1:PORT+I-1 only (5681, 5682,
#                     5683), its Erlang distribution port is PORT+I-1+20000 (25681...) and its node
#                     name is sdj<amqp-port>@localhost (sdj5681@localhost...). Clusters with different
#                     ports (ranges must not overlap) run side by side.
#   SDJ_CLUSTER_DIR   (default <repo>/var/rabbitmq-cluster-<SDJ_CLUSTER_PORT>) everything of this
#                     cluster: home/.erlang.cookie (the cluster's own cookie, random, made once, mode
#                     400; HOME=<dir>/home for rabbitmq-server and rabbitmqctl so the system cookie in
#                     /var/lib/rabbitmq is never used; RABBITMQ_ERLANG_COOKIE is deprecated in 3.10),
#                     cluster.env (N, as recorded by `up`) and node<I>/ with rabbitmq.conf,
#                     rabbitmq-env.conf (empty: /etc/rabbitmq/rabbitmq-env.conf is not read),
#                     enabled_plugins (empty: no plugins), mnesia/ (data), log/, rabbitmq.pid.
#                     `down` deletes it.
#   SDJ_CLUSTER_TIMEOUT (default 120) seconds to wait for a node to boot / the cluster to form / stop.
#   SDJ_CLUSTER_HOSTS (optional) "rabbit@mq1 rabbit@mq2 rabbit@mq3": real nodes that ops installed and
#                     started themselves with a shared cookie. Then nothing is started or stopped:
#                     `up` only joins nodes 2.. to node 1 (`rabbitmqctl -n NODE stop_app;
#                     join_cluster NODE1; start_app`, for nodes not yet clustered) and waits for them
#                     as running, `status` asks each node (`rabbitmq-diagnostics check_running`),
#                     `ctl I` addresses the I-th name, `uris` prints amqp://...@<host>:5672/ for each
#                     (port: SDJ_CLUSTER_HOSTS_AMQP_PORT), `down`/`start-node`/`stop-node` refuse (ops
#                     stop real hosts themselves). The plain `rabbitmqctl` of the PATH is used, with
#                     the caller's own environment, hence the cookie ops installed for that user
#                     (Debian's wrapper, as root: /var/lib/rabbitmq/.erlang.cookie).
#                     SDJ_CLUSTER_DRY_RUN=1 (hosts mode only) prints the rabbitmqctl commands of `up`
#                     instead of running them.
#
# Local nodes: started with `rabbitmq-server -detached` (never systemctl), as the calling user (root),
# through RabbitMQ's own scripts (/usr/lib/rabbitmq/bin) rather than Debian's /usr/sbin wrapper, which
# would `su rabbitmq` and reset HOME to /var/lib/rabbitmq (the system node's cookie). Every
# RABBITMQ_* / ERL_*FLAGS variable of the caller is dropped for them. epmd (port 4369) is shared with
# the system node and is left running by `down`. Node configuration: AMQP listener 127.0.0.1 only,
# Erlang distribution bound to 127.0.0.1, cluster_partition_handling = pause_minority; guest keeps
# its default (loopback only), which is fine since everything connects over 127.0.0.1.
set -euo pipefail

# Debian puts the RabbitMQ tools in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

SELF=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

usage() {
    cat <<EOF
usage: $SELF <command> [args]
  up [N]                  start N local nodes (default 3) and cluster them
  down                    stop every node of this cluster and delete its directory
  status                  which nodes run, their AMQP ports (exit 0 if all run)
  ctl I ARGS...           rabbitmqctl ARGS... against node I (1-based)
  uris [USER:PASS] [VHOST]  one AMQP URI per node
  start-node I            start node I (it rejoins the cluster)
  stop-node I             stop node I (whole Erlang node)
environment: SDJ_CLUSTER_PORT (5681), SDJ_CLUSTER_DIR, SDJ_CLUSTER_TIMEOUT (120), SDJ_CLUSTER_HOSTS
(see the header of $0)
EOF
}

log() { echo "rabbitmq-cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage_error() { log "$*"; usage >&2; exit 2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

BASE_PORT=${SDJ_CLUSTER_PORT:-5681}
is_uint "$BASE_PORT" && [ "$BASE_PORT" -ge 1 ] && [ "$BASE_PORT" -le 45000 ] \
    || die "SDJ_CLUSTER_PORT must be a port number (1..45000, the distribution port adds 20000): $BASE_PORT"
CLUSTER_DIR=${SDJ_CLUSTER_DIR:-$REPO_DIR/var/rabbitmq-cluster-$BASE_PORT}
case $CLUSTER_DIR in /*) ;; *) CLUSTER_DIR=$PWD/$CLUSTER_DIR ;; esac
CLUSTER_DIR=${CLUSTER_DIR%/}
TIMEOUT=${SDJ_CLUSTER_TIMEOUT:-120}
is_uint "$TIMEOUT" || die "SDJ_CLUSTER_TIMEOUT must be a number of seconds: $TIMEOUT"
read -r -a HOSTS <<<"${SDJ_CLUSTER_HOSTS:-}"
HOSTS_AMQP_PORT=${SDJ_CLUSTER_HOSTS_AMQP_PORT:-5672}
DRY_RUN=${SDJ_CLUSTER_DRY_RUN:-0}

HOME_DIR=$CLUSTER_DIR/home
COOKIE_FILE=$HOME_DIR/.erlang.cookie
STATE_FILE=$CLUSTER_DIR/cluster.env   # NODES=<n>; also marks the directory as ours (for `down`)
MARKER="# made by deploy/rabbitmq-cluster.sh"

hosts_mode() { [ "${#HOSTS[@]}" -gt 0 ]; }

# --- RabbitMQ's own scripts (not Debian's su wrapper) ----------------------------

rmq_bin_dir() {
    if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
        echo /usr/lib/rabbitmq/bin
        return
    fi
    local server
    server=$(command -v rabbitmq-server) || die "rabbitmq-server not found (install the rabbitmq-server package)"
    dirname "$(readlink -f "$server")"
}

# --- nodes -------------------------------------------------------------------------

amqp_port() { echo $((BASE_PORT + $1 - 1)); }
dist_port() { echo $((BASE_PORT + $1 - 1 + 20000)); }
node_dir() { echo "$CLUSTER_DIR/node$1"; }

node_name() {
    if hosts_mode; then
        echo "${HOSTS[$1 - 1]}"
    else
        echo "sdj$(amqp_port "$1")@localhost"
    fi
}

# Number of nodes of this cluster: the hosts given, or what `up` recorded (0: never set up).
configured_nodes() {
    if hosts_mode; then
        echo "${#HOSTS[@]}"
    elif [ -f "$STATE_FILE" ]; then
        sed -n 's/^NODES=\([0-9][0-9]*\)$/\1/p' "$STATE_FILE" | head -n1
    else
        echo 0
    fi
}

check_index() {  # check_index I -> dies unless 1 <= I <= configured nodes
    local i=$1 n
    is_uint "$i" && [ "$i" -ge 1 ] || usage_error "node index must be 1, 2, ...: '$i'"
    n=$(configured_nodes)
    if [ "$n" -eq 0 ]; then
        die "no cluster in $CLUSTER_DIR (run: $SELF up)"
    fi
    [ "$i" -le "$n" ] || die "node $i does not exist: the cluster has $n node(s)"
}

# Environment of a local node's server and of the rabbitmqctl talking to it.
node_env() {
    local i=$1 dir var
    dir=$(node_dir "$i")
    for var in $(compgen -e); do
        case $var in RABBITMQ_* | ERL_FLAGS | ERL_AFLAGS | ERL_ZFLAGS) unset "$var" ;; esac
    done
    export HOME=$HOME_DIR
    export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
    export RABBITMQ_NODENAME
    RABBITMQ_NODENAME=$(node_name "$i")
    export RABBITMQ_USE_LONGNAME=false
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT
    RABBITMQ_NODE_PORT=$(amqp_port "$i")
    export RABBITMQ_DIST_PORT
    RABBITMQ_DIST_PORT=$(dist_port "$i")
    export RABBITMQ_MNESIA_BASE=$dir/mnesia
    export RABBITMQ_LOG_BASE=$dir/log
    export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
    export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config   # never written: no system advanced.config
    export RABBITMQ_CONFIG_FILES=$dir/conf.d                    # idem for /etc/rabbitmq/conf.d
    export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
    export RABBITMQ_PID_FILE=$dir/rabbitmq.pid
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export ERL_EPMD_ADDRESS=127.0.0.1   # only used if this node has to start epmd itself
}

# rabbitmqctl against node I (prints nothing of its own; returns its exit status)
rmqctl() {
    local i=$1
    shift
    if hosts_mode; then
        rabbitmqctl -n "$(node_name "$i")" "$@"
    else
        [ -f "$COOKIE_FILE" ] || die "no cluster in $CLUSTER_DIR (run: $SELF up)"
        (
            node_env "$i"
            cd "$CLUSTER_DIR"
            if [ -n "${CTL_TIMEOUT:-}" ]; then
                exec timeout "$CTL_TIMEOUT" "$RMQ_BIN/rabbitmqctl" -n "$(node_name "$i")" "$@"
            fi
            exec "$RMQ_BIN/rabbitmqctl" -n "$(node_name "$i")" "$@"
        )
    fi
}

# What the hosts mode runs on `up` (or only prints, with SDJ_CLUSTER_DRY_RUN=1).
run_ctl() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "+ rabbitmqctl -n $(node_name "$1") ${*:2}"
    else
        rmqctl "$@" >/dev/null
    fi
}

# Pids of this cluster's Erlang VMs (servers and our rabbitmqctl runs) — those started with
# HOME=$HOME_DIR; with an index, only node I's server.
beam_pids() {
    local want=${1:-} pid env
    for pid in $(pgrep -x beam.smp || true); do
        env=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ") || continue
        grep -qxF "HOME=$HOME_DIR" <<<"$env" || continue
        if [ -n "$want" ]; then
            grep -qxF "RABBITMQ_NODENAME=$(node_name "$want")" <<<"$env" || continue
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '-s rabbit boot' || continue
        fi
        echo "$pid"
    done
}

node_pid() {  # the pid of node I's server VM, or nothing
    local i=$1 pid pid_file
    pid_file=$(node_dir "$i")/rabbitmq.pid
    if [ -f "$pid_file" ]; then
        pid=$(tr -dc 0-9 <"$pid_file")
        if [ -n "$pid" ] && [ -r "/proc/$pid/environ" ] \
            && tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "HOME=$HOME_DIR" \
            && tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "RABBITMQ_NODENAME=$(node_name "$i")"; then
            echo "$pid"
            return
        fi
    fi
    beam_pids "$i" | head -n1
}

listening() {  # listening PORT: does anything listen on TCP PORT (any address)?
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# A local node "runs" when its VM is alive and its AMQP port is open (the rabbit app is up and
# not paused by pause_minority).
node_runs() {
    local pid
    pid=$(node_pid "$1")
    [ -n "$pid" ] && listening "$(amqp_port "$1")"
}

epmd_names() {
    local epmd
    epmd=$(command -v epmd || true)
    [ -n "$epmd" ] || epmd=/usr/lib/erlang/bin/epmd
    "$epmd" -names 2>/dev/null || true
}

# --- files --------------------------------------------------------------------------

ensure_cluster_dir() {
    if [ -d "$CLUSTER_DIR" ] && [ ! -f "$STATE_FILE" ] && [ -n "$(ls -A "$CLUSTER_DIR")" ]; then
        die "$CLUSTER_DIR exists and was not made by this script; choose another SDJ_CLUSTER_DIR"
    fi
    mkdir -p "$CLUSTER_DIR" "$HOME_DIR"
    chmod 700 "$HOME_DIR"
    if [ ! -f "$COOKIE_FILE" ]; then
        local cookie
        cookie=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
        [ "${#cookie}" -eq 40 ] || die "could not make a cookie"
        (umask 077 && printf '%s' "$cookie" >"$COOKIE_FILE")
        chmod 400 "$COOKIE_FILE"
    fi
}

write_state() {  # write_state N
    printf '%s\nNODES=%s\nSDJ_CLUSTER_PORT=%s\n' "$MARKER" "$1" "$BASE_PORT" >"$STATE_FILE.tmp"
    mv -f "$STATE_FILE.tmp" "$STATE_FILE"
}

write_node_files() {
    local i=$1 dir
    dir=$(node_dir "$i")
    mkdir -p "$dir/mnesia" "$dir/log"
    cat >"$dir/rabbitmq.conf" <<EOF
$MARKER (rewritten on every start)
listeners.tcp.1 = 127.0.0.1:$(amqp_port "$i")
cluster_partition_handling = pause_minority
EOF
    printf '%s\n' "$MARKER: keeps /etc/rabbitmq/rabbitmq-env.conf (the system node's) from being read" \
        >"$dir/rabbitmq-env.conf"
    printf '[].\n' >"$dir/enabled_plugins"
}

show_logs() {
    local n i dir f
    n=$(configured_nodes)
    for ((i = 1; i <= n; i++)); do
        dir=$(node_dir "$i")
        for f in "$dir/log/startup.log" "$dir/log/$(node_name "$i").log"; do
            [ -s "$f" ] || continue
            echo "----- tail -n 40 $f" >&2
            tail -n 40 "$f" >&2
        done
    done
}

fail_with_logs() {
    log "ERROR: $*"
    show_logs
    log "ERROR: $*"
    exit 1
}

# --- local node start / stop --------------------------------------------------------------

# Launch node I's VM (detached) unless it already runs; does not wait for it.
launch_node() {
    local i=$1 node amqp dist dir
    node=$(node_name "$i")
    amqp=$(amqp_port "$i")
    dist=$(dist_port "$i")
    dir=$(node_dir "$i")
    if [ -n "$(node_pid "$i")" ]; then
        return 0
    fi
    listening "$amqp" && fail_with_logs "port $amqp (AMQP of node $i) is taken by another process"
    listening "$dist" && fail_with_logs "port $dist (Erlang distribution of node $i) is taken by another process"
    if epmd_names | grep -q "^name ${node%@*} at port"; then
        fail_with_logs "node name $node is already registered in epmd by a node that is not ours"
    fi
    write_node_files "$i"
    rm -f "$dir/rabbitmq.pid"
    log "starting node $i: $node, AMQP 127.0.0.1:$amqp, distribution $dist"
    (
        node_env "$i"
        cd "$dir"
        echo "=== $(date '+%F %T') rabbitmq-server -detached" >>"$dir/log/startup.log"
        # 9>&-: the VM must not inherit (and hold forever) the lock of with_lock
        "$RMQ_BIN/rabbitmq-server" -detached </dev/null >>"$dir/log/startup.log" 2>&1 9>&-
    ) || fail_with_logs "rabbitmq-server -detached failed for node $i"
}

# await_startup fails at once while the new VM has not yet registered its node name, hence the loop.
await_node() {
    local i=$1 start end out
    start=$SECONDS
    end=$((SECONDS + TIMEOUT))
    until out=$(rmqctl "$i" await_startup --timeout "$((end - SECONDS > 1 ? end - SECONDS : 1))" 2>&1); do
        # (the detached VM takes a moment to appear as beam.smp)
        [ -n "$(node_pid "$i")" ] || [ "$SECONDS" -lt "$((start + 10))" ] || fail_with_logs "node $i ($(node_name "$i")) died while starting"
        [ "$SECONDS" -lt "$end" ] \
            || fail_with_logs "node $i ($(node_name "$i")) did not start within ${TIMEOUT}s: $out"
        sleep 1
    done
}

wait_pid_gone() {  # wait_pid_gone SECONDS PID...: 0 when all are gone
    local secs=$1 end pid alive
    shift
    end=$((SECONDS + secs))
    while :; do
        alive=0
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        [ "$alive" -eq 0 ] && return 0
        [ "$SECONDS" -ge "$end" ] && return 1
        sleep 0.5
    done
}

stop_local_node() {  # stop_local_node I: rabbitmqctl stop, then TERM, then KILL
    local i=$1 pid
    pid=$(node_pid "$i")
    if [ -z "$pid" ]; then
        log "node $i ($(node_name "$i")) is not running"
        return 0
    fi
    log "stopping node $i ($(node_name "$i"), pid $pid)"
    local pid_file
    pid_file=$(node_dir "$i")/rabbitmq.pid
    [ -f "$pid_file" ] || pid_file=""   # with the pid file, `stop` waits for the VM to exit
    CTL_TIMEOUT=$((TIMEOUT + 10)) rmqctl "$i" stop --idempotent ${pid_file:+"$pid_file"} >/dev/null 2>&1 || true
    wait_pid_gone "$TIMEOUT" "$pid" && return 0
    log "node $i did not stop: SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    wait_pid_gone 15 "$pid" && return 0
    log "node $i still there: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_gone 10 "$pid" || die "could not kill pid $pid"
}

# --- cluster membership -----------------------------------------------------------------

# cluster_nodes I KEY: the nodes listed under KEY (disk_nodes, running_nodes...) by node I.
cluster_nodes() {
    local out
    out=$(rmqctl "$1" cluster_status --formatter json 2>/dev/null) || return 1
    jq -r --arg key "$2" '.[$key][]?' <<<"$out"
}

all_running_on_1() {  # all_running_on_1 N: does node 1 list nodes 1..N as running?
    local n=$1 running i
    running=$(cluster_nodes 1 running_nodes) || return 1
    for ((i = 1; i <= n; i++)); do
        grep -qxF "$(node_name "$i")" <<<"$running" || return 1
    done
}

# join_missing N: every node 2..N that node 1 does not list as member: stop_app, join_cluster, start_app
join_missing() {
    local n=$1 members i node first
    first=$(node_name 1)
    if [ "$DRY_RUN" = 1 ]; then
        echo "+ rabbitmqctl -n $first cluster_status   # (dry run: every node 2.. counts as not yet joined)"
        members=$first
    else
        members=$(cluster_nodes 1 disk_nodes) || fail_with_logs "cluster_status on node 1 ($first) failed"
    fi
    for ((i = 2; i <= n; i++)); do
        node=$(node_name "$i")
        if grep -qxF "$node" <<<"$members"; then
            continue
        fi
        log "joining node $i ($node) to $first"
        run_ctl "$i" stop_app || fail_with_logs "stop_app on node $i failed"
        run_ctl "$i" join_cluster "$first" || fail_with_logs "join_cluster on node $i failed"
        run_ctl "$i" start_app || fail_with_logs "start_app on node $i failed"
    done
}

wait_cluster() {  # wait_cluster N
    local n=$1 end
    end=$((SECONDS + TIMEOUT))
    until all_running_on_1 "$n"; do
        [ "$SECONDS" -lt "$end" ] \
            || fail_with_logs "cluster_status on node 1 did not list all $n nodes as running within ${TIMEOUT}s"
        sleep 1
    done
}

# --- commands ------------------------------------------------------------------------------

with_lock() {  # serialise up/down/start-node/stop-node of one cluster
    local lock
    lock="${TMPDIR:-/tmp}/sdj-rabbitmq-cluster-$(printf '%s' "$CLUSTER_DIR" | cksum | cut -d' ' -f1).lock"
    exec 9>"$lock"
    flock -w "$((TIMEOUT * 3))" 9 || die "another $SELF holds $lock"
}

cmd_up() {
    local n=${1:-3} have i started
    is_uint "$n" && [ "$n" -ge 1 ] || usage_error "up: N must be 1, 2, ...: '$n'"
    if hosts_mode; then
        [ "$#" -eq 0 ] || [ "$n" -eq "${#HOSTS[@]}" ] \
            || die "up $n: SDJ_CLUSTER_HOSTS names ${#HOSTS[@]} node(s)"
        n=${#HOSTS[@]}
        [ "$DRY_RUN" = 1 ] || rmqctl 1 await_startup --timeout "$TIMEOUT" >/dev/null \
            || die "node 1 ($(node_name 1)) does not answer"
        join_missing "$n"
        if [ "$DRY_RUN" != 1 ]; then
            wait_cluster "$n"
            cmd_status
        fi
        return
    fi
    [ "$((BASE_PORT + n - 1 + 20000))" -le 65535 ] || die "up $n: ports beyond 65535"
    with_lock
    have=$(configured_nodes)
    [ "$n" -ge "$have" ] || die "the cluster in $CLUSTER_DIR has $have nodes; run '$SELF down' first to make $n"
    if [ "$have" -eq "$n" ] && [ -n "$(node_pid 1)" ] && all_running_on_1 "$n" 2>/dev/null; then
        log "already up: $n node(s)"
        cmd_status
        return
    fi
    ensure_cluster_dir
    write_state "$n"
    # Start every node before waiting for any: after a crash with data kept, each node waits
    # for the others' tables at boot.
    started=""
    for ((i = 1; i <= n; i++)); do
        if [ -z "$(node_pid "$i")" ]; then
            launch_node "$i"
            started="$started $i"
        fi
    done
    for ((i = 1; i <= n; i++)); do
        await_node "$i"
    done
    [ -z "$started" ] || log "started node(s):$started"
    join_missing "$n"
    wait_cluster "$n"
    log "up: $n node(s) running in one cluster"
    cmd_status
}

cmd_down() {
    local n i pid pids
    if hosts_mode; then
        die "down: SDJ_CLUSTER_HOSTS names real hosts; ops stop those themselves"
    fi
    with_lock
    if [ ! -e "$CLUSTER_DIR" ]; then
        log "nothing to do: no $CLUSTER_DIR"
        return 0
    fi
    [ -f "$STATE_FILE" ] && grep -qxF "$MARKER" "$STATE_FILE" \
        || die "$CLUSTER_DIR was not made by this script (no $STATE_FILE); not touching it"
    n=$(configured_nodes)
    # All nodes at once: stopped one by one, the last ones would pause (pause_minority) and wait.
    pids=()
    for ((i = 1; i <= n; i++)); do
        stop_local_node "$i" &
        pids+=("$!")
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    # Anything of ours left (a VM that lost its pid file, a hanging rabbitmqctl): TERM, then KILL.
    pids=($(beam_pids))
    if [ "${#pids[@]}" -gt 0 ]; then
        log "left over: ${pids[*]}: SIGTERM"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        if ! wait_pid_gone 15 "${pids[@]}"; then
            log "SIGKILL ${pids[*]}"
            kill -KILL "${pids[@]}" 2>/dev/null || true
            wait_pid_gone 10 "${pids[@]}" || die "could not kill ${pids[*]}"
        fi
    fi
    rm -rf -- "$CLUSTER_DIR"
    log "down: $n node(s) stopped, $CLUSTER_DIR deleted"
}

cmd_status() {
    local n i node pid ok=0 state
    n=$(configured_nodes)
    if hosts_mode; then
        for ((i = 1; i <= n; i++)); do
            node=$(node_name "$i")
            if rabbitmq-diagnostics -q -n "$node" check_running >/dev/null 2>&1; then
                state=running
            else
                state="not running"
                ok=1
            fi
            printf 'node %d %s amqp %s:%s %s\n' "$i" "$node" "${node#*@}" "$HOSTS_AMQP_PORT" "$state"
        done
        return "$ok"
    fi
    if [ "$n" -eq 0 ]; then
        echo "no cluster in $CLUSTER_DIR"
        return 1
    fi
    echo "cluster of $n node(s) in $CLUSTER_DIR"
    for ((i = 1; i <= n; i++)); do
        node=$(node_name "$i")
        pid=$(node_pid "$i")
        if [ -z "$pid" ]; then
            state=stopped
            ok=1
        elif listening "$(amqp_port "$i")"; then
            state=running
        else
            state="VM up, AMQP closed (booting, stop_app or paused)"
            ok=1
        fi
        printf 'node %d %-20s amqp 127.0.0.1:%s dist %s pid %-7s %s\n' \
            "$i" "$node" "$(amqp_port "$i")" "$(dist_port "$i")" "${pid:--}" "$state"
    done
    return "$ok"
}

cmd_ctl() {
    [ "$#" -ge 2 ] || usage_error "ctl: expected I ARGS..."
    local i=$1
    shift
    check_index "$i"
    local rc=0
    rmqctl "$i" "$@" || rc=$?
    return "$rc"
}

urlencode() {
    local s=$1 out="" hex
    for hex in $(printf '%s' "$s" | od -An -v -tx1); do
        case $hex in
            3[0-9] | 4[1-9a-f] | 5[0-9a] | 6[1-9a-f] | 7[0-9a] | 2d | 2e | 5f | 7e)
                out+=$(printf "\\x$hex") ;;
            *) out+="%${hex^^}" ;;
        esac
    done
    printf '%s' "$out"
}

cmd_uris() {
    [ "$#" -le 2 ] || usage_error "uris: expected [USER:PASS] [VHOST]"
    local creds=${1:-guest:guest} vhost=${2:-/} n i user pass path host port
    [[ $creds == *:* ]] || usage_error "uris: expected USER:PASS, got '$creds'"
    user=${creds%%:*}
    pass=${creds#*:}
    if [ "$vhost" = / ]; then path=""; else path=$(urlencode "$vhost"); fi
    n=$(configured_nodes)
    if [ "$n" -eq 0 ]; then n=3; fi   # not up: the default size
    for ((i = 1; i <= n; i++)); do
        if hosts_mode; then
            host=$(node_name "$i")
            host=${host#*@}
            port=$HOSTS_AMQP_PORT
        else
            host=127.0.0.1
            port=$(amqp_port "$i")
        fi
        printf 'amqp://%s:%s@%s:%s/%s\n' "$(urlencode "$user")" "$(urlencode "$pass")" "$host" "$port" "$path"
    done
}

cmd_stop_node() {
    [ "$#" -eq 1 ] || usage_error "stop-node: expected I"
    hosts_mode && die "stop-node: SDJ_CLUSTER_HOSTS names real hosts; ops stop those themselves"
    check_index "$1"
    with_lock
    stop_local_node "$1"
}

cmd_start_node() {
    [ "$#" -eq 1 ] || usage_error "start-node: expected I"
    hosts_mode && die "start-node: SDJ_CLUSTER_HOSTS names real hosts; ops start those themselves"
    local i=$1 end
    check_index "$i"
    with_lock
    if node_runs "$i"; then
        log "node $i ($(node_name "$i")) already runs"
        return 0
    fi
    if [ -n "$(node_pid "$i")" ] \
        && ! rmqctl "$i" await_startup --timeout 10 >/dev/null 2>&1; then
        log "node $i: VM up but the rabbit app is not (stop_app?): start_app"
        rmqctl "$i" start_app >/dev/null || fail_with_logs "start_app on node $i failed"
    fi
    launch_node "$i"
    await_node "$i"
    if [ "$i" -ne 1 ] && [ -n "$(node_pid 1)" ]; then
        end=$((SECONDS + TIMEOUT))
        until cluster_nodes 1 running_nodes | grep -qxF "$(node_name "$i")"; do
            [ "$SECONDS" -lt "$end" ] || fail_with_logs "node 1 does not list node $i as running"
            sleep 1
        done
    fi
    log "node $i ($(node_name "$i")) runs"
}

main() {
    [ "$#" -ge 1 ] || usage_error "missing command"
    local cmd=$1
    shift
    case $cmd in
        -h | --help | help) usage; return 0 ;;
        up | down | status | ctl | uris | start-node | stop-node) ;;
        *) usage_error "unknown command: $cmd" ;;
    esac
    if ! hosts_mode; then
        RMQ_BIN=$(rmq_bin_dir)
    fi
    case $cmd in
        up) [ "$#" -le 1 ] || usage_error "up: expected [N]"; cmd_up "$@" ;;
        down) [ "$#" -eq 0 ] || usage_error "down: no arguments"; cmd_down ;;
        status) [ "$#" -eq 0 ] || usage_error "status: no arguments"; cmd_status ;;
        ctl) cmd_ctl "$@" ;;
        uris) cmd_uris "$@" ;;
        start-node) cmd_start_node "$@" ;;
        stop-node) cmd_stop_node "$@" ;;
    esac
}

main "$@"
