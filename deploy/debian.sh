# Sourced by deploy/ensure-*.sh: what installing a Debian package on a machine without systemd takes.
# The sourcing script sets ENSURE (its name, for log lines) first, and may add temporary files to
# CLEANUP_FILES; they and the policy below are removed on exit.
#
# - log / die: "<ENSURE>: …" on stderr.
# - as_root: root runs it; others through sudo when there is one.
# - apt_install PKG…: apt-get update (once per script) and install, with maintainer scripts kept from
#   starting services (invoke-rc.d fails without an init system and would leave the package half-configured:
#   a temporary policy-rc.d answering 101 = "action denied", which invoke-rc.d treats as success; an existing
#   policy-rc.d, as docker images ship, is left as it is); if apt-get fails, dpkg --configure -a finishes
#   what it can and the caller judges by what is installed. APT_QUIET=1 shows apt's output only on failure.

log() { echo "$ENSURE: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif have sudo; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

CLEANUP_FILES=()
POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_ADDED=0
remove_policy() {
    if [ "$POLICY_ADDED" -eq 1 ]; then
        as_root rm -f "$POLICY_RC_D" || true
        POLICY_ADDED=0
    fi
}
_cleanup() {
    remove_policy
    if [ "${#CLEANUP_FILES[@]}" -gt 0 ]; then rm -f "${CLEANUP_FILES[@]}"; fi
}
trap _cleanup EXIT
deny_service_starts() {
    if [ ! -e "$POLICY_RC_D" ]; then
        printf '#!/bin/sh\n# temporary, added by %s\nexit 101\n' "$ENSURE" | as_root tee "$POLICY_RC_D" >/dev/null
        as_root chmod 0755 "$POLICY_RC_D"
        POLICY_ADDED=1
    fi
}

# Run a command; with APT_QUIET=1 its output is kept aside and shown only when it fails.
_apt() {
    if [ "${APT_QUIET:-0}" != 1 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive "$@"
        return
    fi
    local out
    out=$(mktemp)
    CLEANUP_FILES+=("$out")
    as_root env DEBIAN_FRONTEND=noninteractive "$@" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
}

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        _apt apt-get update -q || die "apt-get update failed"
        APT_UPDATED=1
    fi
    deny_service_starts
    log "installing $* (Debian packages)"
    if ! _apt apt-get install -y -q "$@"; then
        log "apt-get install reported an error; trying to finish configuration"
        as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a || true
    fi
    remove_policy
}
