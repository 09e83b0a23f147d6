#!/usr/bin/env bash
# Make sure the browser tests (tests/browser) have what they drive and check with. Idempotent.
#
#   deploy/ensure-browser.sh
#
# - /usr/bin/chromium or /usr/bin/chromedriver missing -> apt-get update (once) +
#   apt-get install chromium chromium-driver (Debian's packages: browser and driver
#   of the same version; nothing else ever downloads a browser or a driver).
# - No font with Chinese glyphs (fc-list :lang=zh) -> apt-get install fonts-wqy-microhei,
#   so that screenshots of Chinese text show characters rather than empty boxes.
# - npm missing -> apt-get install nodejs npm.
# - axe-core from npm, at the exact version pinned by tests/browser/package.json and
#   package-lock.json: `npm ci` into var/npm/ (var/npm/node_modules/axe-core/axe.min.js),
#   only when that file is missing or either of the two files changed since the last
#   install (stamp: var/npm/.installed-<sha1 of both>). npm's output is shown only on failure.
# - All there -> prints "browser: ready", exits 0, touches nothing.
#
# Runs as root; when not root, uses sudo if it exists (only for apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
PKG_DIR=tests/browser
NPM_DIR=var/npm
AXE=$NPM_DIR/node_modules/axe-core/axe.min.js

log() { echo "ensure-browser: $*" >&2; }
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

have() { command -v "$1" >/dev/null 2>&1; }

OUT=""
cleanup() {
    remove_policy
    if [ -n "$OUT" ]; then rm -f "$OUT"; fi
}
trap cleanup EXIT

# Run a command with its output kept aside; shown only when it fails.
quietly() {
    [ -n "$OUT" ] || OUT=$(mktemp)
    if ! "$@" >"$OUT" 2>&1; then
        cat "$OUT" >&2
        return 1
    fi
}

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
}

# Keep maintainer scripts (dbus and friends come along with chromium) from starting
# services themselves: a temporary policy-rc.d answering 101 = "action denied". An
# existing policy-rc.d is left as it is.
POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_ADDED=0
remove_policy() {
    if [ "$POLICY_ADDED" -eq 1 ]; then
        as_root rm -f "$POLICY_RC_D" || true
        POLICY_ADDED=0
    fi
}
deny_service_starts() {
    if [ ! -e "$POLICY_RC_D" ]; then
        printf '#!/bin/sh\n# temporary, added by ensure-browser.sh\nexit 101\n' \
            | as_root tee "$POLICY_RC_D" >/dev/null
        as_root chmod 0755 "$POLICY_RC_D"
        POLICY_ADDED=1
    fi
}

apt_install() {
    apt_update_once
    deny_service_starts
    log "installing $* (Debian packages)"
    if ! quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; then
        log "apt-get install reported an error; trying to finish configuration"
        as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a || true
    fi
    remove_policy
}

has_chinese_font() { have fc-list && [ -n "$(fc-list :lang=zh family 2>/dev/null | head -n 1)" ]; }

stamp() { cat "$PKG_DIR/package.json" "$PKG_DIR/package-lock.json" | sha1sum | cut -c1-12; }

main() {
    local changed=0 want_apt=()

    if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
        want_apt+=(chromium chromium-driver)
    fi
    if ! has_chinese_font; then
        want_apt+=(fonts-wqy-microhei)
    fi
    if ! have npm; then
        want_apt+=(nodejs npm)
    fi
    if [ "${#want_apt[@]}" -gt 0 ]; then
        apt_install "${want_apt[@]}"
        changed=1
        [ -x "$CHROMIUM" ] || die "$CHROMIUM is still missing"
        [ -x "$CHROMEDRIVER" ] || die "$CHROMEDRIVER is still missing"
        have npm || die "npm is still missing"
    fi

    local stamp_file
    stamp_file=$NPM_DIR/.installed-$(stamp)
    if [ ! -f "$AXE" ] || [ ! -f "$stamp_file" ]; then
        log "installing axe-core from npm into $NPM_DIR (npm ci, versions from $PKG_DIR/package-lock.json)"
        mkdir -p "$NPM_DIR"
        rm -f "$NPM_DIR"/.installed-*
        cp "$PKG_DIR/package.json" "$PKG_DIR/package-lock.json" "$NPM_DIR/"
        # --ignore-scripts: nothing from the registry runs here; axe-core has no install step.
        quietly npm ci --prefix "$NPM_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error \
            || die "npm ci in $NPM_DIR failed"
        [ -f "$AXE" ] || die "npm ci finished but $AXE is missing"
        touch "$stamp_file"
        changed=1
    fi

    if [ "$changed" -eq 1 ]; then
        log "installed: $("$CHROMEDRIVER" --version 2>/dev/null | cut -d' ' -f1-2), axe-core $(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$NPM_DIR/node_modules/axe-core/package.json" | head -n 1)"
    fi
    echo "browser: ready"
}

main "$@"
