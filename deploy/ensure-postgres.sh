#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432 and that user postgres can
# connect there over TCP without a password. Idempotent.
#
#   deploy/ensure-postgres.sh
#
# - `psql -h 127.0.0.1 -U postgres -c 'select 1'` works -> prints
#   "postgres: running", exits 0, touches nothing.
# - pg_ctlcluster/psql missing -> apt-get update (once) + apt-get install postgresql.
# - No cluster -> pg_createcluster <newest version> main (port 5432, C.UTF-8).
# - Makes the cluster listen on 127.0.0.1 (conf.d drop-in, only if needed).
# - Starts it with `pg_ctlcluster --skip-systemctl-redirect <ver> main start`
#   (never systemctl: the target machines run no systemd).
# - If the server is up but the TCP login is refused, puts
#   `host all all 127.0.0.1/32 trust` at the top of that cluster's pg_hba.conf
#   (backup kept next to it) and reloads. This is a dev/test setup: anybody
#   on this machine can then log in as any role over 127.0.0.1.
# - Waits up to POSTGRES_WAIT_SECONDS (60); on failure exits non-zero with the
#   tail of the cluster log.
#
# Runs as root; when not root, uses sudo if it exists (only for what needs root).
# No nc needed: port checks use bash's /dev/tcp.
set -euo pipefail

HOST=127.0.0.1
PORT=5432
WAIT_SECONDS=${POSTGRES_WAIT_SECONDS:-60}
TRUST_LINE="host all all 127.0.0.1/32 trust"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

ENSURE=ensure-postgres
. "$(dirname "$0")/debian.sh"

port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$PORT" 2>/dev/null
}

# The check that matters to the project: a password-less TCP login as postgres.
# -w: never prompt for a password (a prompt would hang a non-interactive run).
PSQL_ERR=""
psql_ok() {
    local out
    if out=$(PGCONNECT_TIMEOUT=5 psql -w -X -h "$HOST" -p "$PORT" -U postgres -d postgres \
                 -Atqc 'select 1' </dev/null 2>&1) && [ "$out" = "1" ]; then
        return 0
    fi
    PSQL_ERR=$out
    return 1
}

# 0 when the server accepts connections (whatever the authentication would say).
server_accepting() {
    have pg_isready && pg_isready -q -h "$HOST" -p "$PORT" -t 3 </dev/null
}

running() {
    echo "postgres: running"
    exit 0
}

# "<ver> <name> <port> <status> <owner> <datadir> <logfile>" per cluster
clusters() { pg_lsclusters -h 2>/dev/null || true; }

VER="" NAME="" STATUS="" LOGFILE=""
pick_cluster() {
    local line
    line=$(clusters | awk -v p="$PORT" '$3 == p' | sort -k1,1V | tail -n 1)
    if [ -z "$line" ]; then
        if port_open; then
            die "something that is not a local Debian cluster listens on $HOST:$PORT and refuses a password-less login as postgres: ${PSQL_ERR:-psql missing}"
        fi
        if [ -n "$(clusters)" ]; then
            log "existing clusters:"
            clusters >&2
            die "no PostgreSQL cluster is configured for port $PORT; not touching the others"
        fi
        local ver
        ver=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null \
                | awk -F/ '{print $5}' | sort -V | tail -n 1)
        [ -n "$ver" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
        log "no cluster yet: pg_createcluster $ver main (port $PORT)"
        as_root pg_createcluster --port "$PORT" --locale C.UTF-8 "$ver" main
        line=$(clusters | awk -v p="$PORT" '$3 == p' | sort -k1,1V | tail -n 1)
        [ -n "$line" ] || die "pg_createcluster $ver main did not produce a cluster on port $PORT"
    fi
    read -r VER NAME _ STATUS _ _ LOGFILE <<<"$line"
    log "using cluster $VER/$NAME ($STATUS)"
}

# Returns 0 when the configuration changed (a running server needs a restart).
ensure_listen_localhost() {
    local current dropin
    current=$(pg_conftool -s "$VER" "$NAME" show listen_addresses 2>/dev/null || echo localhost)
    current=${current//\'/}
    case ",${current// /}," in
        *,\*,* | *,0.0.0.0,* | *,127.0.0.1,* | *,localhost,*) return 1 ;;
    esac
    dropin=/etc/postgresql/$VER/$NAME/conf.d/zz-songdaojia-listen.conf
    log "listen_addresses is '$current'; adding 127.0.0.1 via $dropin"
    as_root mkdir -p "$(dirname "$dropin")"
    printf "# added by deploy/ensure-postgres.sh\nlisten_addresses = '%s'\n" \
        "${current:+$current,}127.0.0.1" | as_root tee "$dropin" >/dev/null
    return 0
}

ctl() { as_root pg_ctlcluster --skip-systemctl-redirect "$VER" "$NAME" "$@"; }

HBA_FIXED=0
trust_localhost_tcp() {
    local hba
    hba=$(pg_conftool -s "$VER" "$NAME" show hba_file 2>/dev/null || echo "/etc/postgresql/$VER/$NAME/pg_hba.conf")
    hba=${hba//\'/}
    if as_root head -n 1 "$hba" | grep -qxF "$TRUST_LINE"; then
        log "$hba already starts with '$TRUST_LINE'; login still fails: $PSQL_ERR"
    else
        log "login over TCP refused ($PSQL_ERR); putting '$TRUST_LINE' at the top of $hba"
        as_root test -e "$hba.before-songdaojia" || as_root cp -p "$hba" "$hba.before-songdaojia"
        as_root sed -i "1i $TRUST_LINE" "$hba"
        ctl reload
    fi
    HBA_FIXED=1
}

show_log() {
    if [ -n "$LOGFILE" ] && as_root test -s "$LOGFILE"; then
        log "---- tail of $LOGFILE ----"
        as_root tail -n 40 "$LOGFILE" >&2 || true
    fi
}

main() {
    if port_open && have psql && psql_ok; then
        running
    fi

    if ! have pg_ctlcluster || ! have psql; then
        apt_install postgresql
        have pg_ctlcluster && have psql || die "postgresql is still not installed"
    fi

    pick_cluster

    local restart=0
    if ensure_listen_localhost; then restart=1; fi

    case "$STATUS" in
        online*)
            if [ "$restart" -eq 1 ]; then
                log "restarting $VER/$NAME to apply listen_addresses"
                ctl restart
            fi
            ;;
        *)
            log "starting: pg_ctlcluster --skip-systemctl-redirect $VER $NAME start"
            ctl start || { show_log; die "pg_ctlcluster $VER $NAME start failed"; }
            ;;
    esac

    local deadline=$((SECONDS + WAIT_SECONDS))
    log "waiting up to ${WAIT_SECONDS}s for a password-less login on $HOST:$PORT"
    while :; do
        if port_open; then
            if psql_ok; then
                running
            fi
            # Up and accepting, yet the login fails: authentication (pg_hba).
            if [ "$HBA_FIXED" -eq 0 ] && server_accepting; then
                trust_localhost_tcp
                continue
            fi
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log
            die "PostgreSQL not usable on $HOST:$PORT within ${WAIT_SECONDS}s${PSQL_ERR:+ (last psql error: $PSQL_ERR)}"
        fi
        sleep 1
    done
}

main "$@"
