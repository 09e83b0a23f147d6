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

ENSURE=ensure-browser
APT_QUIET=1
. deploy/debian.sh  # (we are in the repository's root: the cd above)

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
        npm ci --prefix "$NPM_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null \
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
