#!/bin/sh
# install-deps.sh: install what nudge needs to build, test and demo on Debian 12.
#
#   contrib/install-deps.sh            (as root, or as a user with sudo)
#
# Idempotent: asks dpkg what is already there and installs only what is
# missing; `apt-get update` runs only when something must be installed, so on a
# ready machine this is a quick no-op. One line per step; on any failure it
# prints the tail of the apt log and exits non-zero. It never removes a
# package: if apt would, it stops and says so.
#
# Node.js: the end-to-end tests render templates with mustache.js as an
# independent reference. A machine may already have a `node` from elsewhere
# (NodeSource, nvm); Debian's nodejs is installed only when no `node` is on
# PATH. mustache.js comes from Debian's node-mustache (/usr/share/nodejs); if
# apt cannot install it next to the foreign node, it falls back to
# `npm install --prefix /usr/local/lib/nudge-node mustache@4` and says so.
set -eu

PACKAGES="build-essential cmake pkg-config git
libuv1-dev libsqlite3-dev sqlite3 libesmtp-dev libcurl4-openssl-dev libyaml-dev
libgmime-3.0-dev libicu-dev liblunar-date-dev libjansson-dev libssl-dev
libsystemd-dev libmicrohttpd-dev libcmocka-dev libcsv-dev
python3 python3-aiosmtpd python3-lunardate python3-dateutil
postfix systemd tzdata openssl ca-certificates
clang libclang-rt-14-dev valgrind curl jq procps psmisc iproute2 file man-db"
# postfix: for smtp-sink(1), a real SMTP sink; it is left unconfigured.
# systemd: for systemd-analyze (verify, security) in tests/e2e/05.
# man-db: `man`, used by systemd-analyze verify to check Documentation= pages.

NPM_PREFIX=/usr/local/lib/nudge-node

say() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: FAILED: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
else
    die "run as root (or install sudo)"
fi
if [ ! -r /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
    die "this script is for Debian 12 (apt-get not found)"
fi

log=$(mktemp /tmp/install-deps.XXXXXX)
trap 'rm -f "$log"' EXIT

# run DESCRIPTION COMMAND...: one line, output to the log, tail on failure.
run() {
    what=$1
    shift
    if "$@" >"$log" 2>&1; then
        say "$what: ok"
    else
        rc=$?
        tail -n 25 "$log" >&2
        die "$what (exit $rc)"
    fi
}

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

apt_env() {
    $SUDO env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a "$@"
}

preseed_postfix() {
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
}

# Fails (and prints the packages) if installing "$@" would remove anything.
check_no_removal() {
    if ! apt_env apt-get install -s -y --no-install-recommends "$@" >"$log" 2>&1; then
        tail -n 25 "$log" >&2
        return 1
    fi
    if grep -q '^Remv ' "$log"; then
        grep '^Remv ' "$log" >&2
        die "installing $* would remove the packages above; resolve that by hand"
    fi
}

missing=
for p in $PACKAGES; do
    installed "$p" || missing="$missing $p"
done

node_path=$(command -v node 2>/dev/null || true)
need_node=
[ -n "$node_path" ] || { installed nodejs || need_node=nodejs; }
need_mustache=
if ! installed node-mustache && [ ! -f "$NPM_PREFIX/node_modules/mustache/package.json" ]; then
    need_mustache=node-mustache
fi

if [ -z "$missing$need_node$need_mustache" ]; then
    say "all $(echo "$PACKAGES" | wc -w) packages, node and mustache.js present: nothing to do"
    exit 0
fi

say "missing:$missing${need_node:+ $need_node}${need_mustache:+ mustache.js}"
run "apt-get update" apt_env apt-get update -qq

if installed postfix; then :; else
    # Leave postfix unconfigured: no questions, no mail system started; the
    # tests only use its smtp-sink binary.
    run "preseed postfix (No configuration)" preseed_postfix
fi

if [ -n "$missing$need_node" ]; then
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    check_no_removal $missing $need_node || die "apt cannot install:$missing $need_node"
    # shellcheck disable=SC2086
    run "apt-get install$missing${need_node:+ $need_node}" \
        apt_env apt-get install -y -qq --no-install-recommends $missing $need_node
fi

node_path=$(command -v node 2>/dev/null || true)
[ -n "$node_path" ] || die "no node on PATH after installing nodejs"
say "node: $node_path $("$node_path" --version 2>/dev/null || echo '(version unknown)')"

if [ -n "$need_mustache" ]; then
    # Debian's node-mustache depends on nodejs: take it from apt only if that
    # neither installs a second node nor removes anything.
    apt_ok=
    if apt_env apt-get install -s -y --no-install-recommends node-mustache >"$log" 2>&1 &&
        ! grep -q '^Remv ' "$log" &&
        { installed nodejs || ! grep -q '^Inst nodejs ' "$log"; }; then
        apt_ok=1
    fi
    if [ -n "$apt_ok" ]; then
        run "apt-get install node-mustache" \
            apt_env apt-get install -y -qq --no-install-recommends node-mustache
    else
        say "apt cannot install node-mustache beside $node_path; using npm instead"
        command -v npm >/dev/null 2>&1 || die "npm not found for the mustache.js fallback"
        run "npm install --prefix $NPM_PREFIX mustache@4" \
            $SUDO npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --silent mustache@4
        say "mustache.js is in $NPM_PREFIX/node_modules: set NODE_PATH=$NPM_PREFIX/node_modules for the tests"
    fi
fi

say "done"
