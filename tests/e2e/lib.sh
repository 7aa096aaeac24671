# shellcheck shell=bash
# lib.sh: helpers shared by the tests/e2e/3x-*.sh scripts (sourced, not run).
#
# A test calls e2e_init NAME first. That finds the binaries (NUDGE_BUILD,
# default $NUDGE_SRC/build) and the source tree (NUDGE_SRC, default the
# repository root), makes a private temporary directory $E2E_TMP and installs
# an EXIT trap that stops every daemon the test started and removes the
# directory (set E2E_KEEP=1 to keep it for a post-mortem).
#
# A daemon lives in a directory of its own ("instance"): nudge.yaml,
# nudge.db, nudge.sock, spool/ and nudged.log. make_instance DIR RULES writes
# a nudge.yaml with the spool transport for every channel; start_daemon DIR
# TIME starts nudged on a frozen clock and waits for its socket; ctl DIR ...
# runs nudgectl against it; stop_daemon DIR sends SIGTERM and waits.
#
# Checks never stop the script: each prints "ok: ..." or "FAIL: ..." and is
# counted; e2e_finish prints "N passed, M failed" and exits non-zero on any
# failure. die is for set-up problems after which nothing else makes sense.
#
# Nothing here sleeps to wait for fires: clocks are frozen and moved with
# `nudgectl advance`. The only waits are bounded polls (0.1 s steps) for a
# socket to appear or a process to exit.
#
# Variables set here (E2E_DIR, RC, OUT, ERR, EXIT_STATUS, EXIT_TENTHS) are
# read by the sourcing test scripts.
# shellcheck disable=SC2034

E2E_PASS=0
E2E_FAIL=0
E2E_FAILED=()
E2E_PIDS=()
E2E_NAME=${E2E_NAME:-e2e}

e2e_init() {
	E2E_NAME=$1
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	E2E_DIR=$here
	NUDGE_SRC=${NUDGE_SRC:-$(cd "$here/../.." && pwd)}
	NUDGE_BUILD=${NUDGE_BUILD:-$NUDGE_SRC/build}
	NUDGED=$NUDGE_BUILD/nudged
	NUDGECTL=$NUDGE_BUILD/nudgectl
	PY=/usr/bin/python3
	export NUDGE_SRC NUDGE_BUILD
	# A sanitizer build reports leaks at exit (and changes the exit status):
	# the libraries' one-time allocations are listed in tests/lsan.supp, as
	# contrib/test.sh does.
	if [ -z "${LSAN_OPTIONS:-}" ] && [ -f "$NUDGE_SRC/tests/lsan.supp" ]; then
		export LSAN_OPTIONS="suppressions=$NUDGE_SRC/tests/lsan.supp:print_suppressions=0"
	fi
	for b in "$NUDGED" "$NUDGECTL"; do
		[ -x "$b" ] || die "$b is missing: build first (cmake --build ${NUDGE_BUILD})"
	done
	for tool in sqlite3 "$PY"; do
		command -v "$tool" >/dev/null || die "$tool is needed (apt-get install sqlite3 python3)"
	done
	E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/nudge-$E2E_NAME.XXXXXX") || die "mktemp failed"
	trap e2e_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

e2e_cleanup() {
	local pid
	for pid in "${E2E_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null
			for _ in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null
		fi
	done
	if [ "${E2E_KEEP:-0}" = 1 ]; then
		echo "note: kept $E2E_TMP"
	else
		rm -rf "$E2E_TMP"
	fi
}

die() {
	echo "FAIL: $E2E_NAME: $*" >&2
	E2E_FAIL=$((E2E_FAIL + 1))
	e2e_summary
	exit 1
}

pass() {
	E2E_PASS=$((E2E_PASS + 1))
	echo "ok: $*"
}

fail() {
	E2E_FAIL=$((E2E_FAIL + 1))
	E2E_FAILED+=("$1")
	echo "FAIL: $*" >&2
}

e2e_summary() {
	echo "$E2E_NAME: $E2E_PASS passed, $E2E_FAIL failed"
	local f
	for f in "${E2E_FAILED[@]}"; do
		echo "  failed: $f"
	done
}

e2e_finish() {
	e2e_summary
	[ "$E2E_FAIL" -eq 0 ]
	exit $?
}

# ---- assertions -------------------------------------------------------------

# check_eq WHAT EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1" "(expected '$2', got '$3')"
	fi
}

# check_rc WHAT EXPECTED_STATUS ACTUAL_STATUS: like check_eq, worded for exit codes.
check_rc() {
	if [ "$2" = "$3" ]; then
		pass "$1 (exit $3)"
	else
		fail "$1" "(expected exit status $2, got $3)"
		[ -z "${OUT+x}" ] || printf '  stdout: %s\n' "$(head -c 2000 <<<"$OUT")" >&2
		[ -z "${ERR+x}" ] || printf '  stderr: %s\n' "$(head -c 2000 <<<"$ERR")" >&2
	fi
}

# check_contains WHAT TEXT NEEDLE (fixed string)
check_contains() {
	if grep -qF -- "$3" <<<"$2"; then
		pass "$1"
	else
		fail "$1" "(no '$3' in:)"
		printf '%s\n' "$2" | head -40 | sed 's/^/    | /' >&2
	fi
}

# check_not_contains WHAT TEXT NEEDLE
check_not_contains() {
	if grep -qF -- "$3" <<<"$2"; then
		fail "$1" "(unexpected '$3' in:)"
		printf '%s\n' "$2" | head -40 | sed 's/^/    | /' >&2
	else
		pass "$1"
	fi
}

# check_match WHAT TEXT ERE
check_match() {
	if grep -qE -- "$3" <<<"$2"; then
		pass "$1"
	else
		fail "$1" "(nothing matches /$3/ in:)"
		printf '%s\n' "$2" | head -40 | sed 's/^/    | /' >&2
	fi
}

# check_true WHAT COMMAND...: passes when COMMAND exits 0.
check_true() {
	local what=$1
	shift
	if "$@"; then
		pass "$what"
	else
		fail "$what" "(command failed: $*)"
	fi
}

# run_cmd COMMAND...: runs COMMAND, sets OUT, ERR (text) and RC (status).
run_cmd() {
	local o e
	o=$(mktemp "$E2E_TMP/out.XXXXXX")
	e=$(mktemp "$E2E_TMP/err.XXXXXX")
	"$@" >"$o" 2>"$e"
	RC=$?
	OUT=$(cat "$o")
	ERR=$(cat "$e")
	rm -f "$o" "$e"
}

# The caret line under a quoted source line of a located error: spaces or
# tabs, then '^'.
has_caret_line() {
	grep -qE '^[[:space:]]*\^[[:space:]]*$' <<<"$1"
}

# ---- instances ----------------------------------------------------------------

# make_instance DIR RULES_DIR [TIMEZONE [EXTRA_YAML]]: a nudge.yaml in DIR
# with every path absolute, spool transports and the source tree's calendars.
# config_head DIR RULES [TZ]: the lines every test instance's nudge.yaml
# starts with (database, socket and spool in DIR); the caller adds the rest.
config_head() {
	cat <<YAML
# written by tests/e2e/$E2E_NAME
database: $1/nudge.db
rules: $2
calendars: $NUDGE_SRC/calendars
timezone: ${3:-UTC}
admin_socket: $1/nudge.sock
spool_dir: $1/spool
YAML
}

make_instance() {
	local dir=$1 rules=$2 tz=${3:-UTC} extra=${4:-}
	mkdir -p "$dir"
	config_head "$dir" "$rules" "$tz" >"$dir/nudge.yaml"
	cat >>"$dir/nudge.yaml" <<YAML
channels:
  email: { transport: spool, from: "Shop <shop@example.com>" }
  sms: { transport: spool }
  webhook: { transport: spool }
  task: { transport: task, staff: [alice, bob] }
$extra
YAML
}

# daemon_pid DIR: the pid of the daemon started on DIR (empty if none).
daemon_pid() {
	cat "$1/nudged.pid" 2>/dev/null
}

# start_daemon DIR TIME [ARGS...]: nudged on a frozen clock at TIME; waits
# (up to 10 s) until the admin socket answers. Its output goes to
# DIR/nudged.log.
start_daemon() {
	local dir=$1 now=$2
	shift 2
	start_daemon_args "$dir" --now "$now" --frozen "$@"
}

# start_daemon_args DIR ARGS...: nudged -c DIR/nudge.yaml ARGS (no clock flags added).
start_daemon_args() {
	local dir=$1 pid
	shift
	# A socket left by a killed daemon stays in place: nudged must cope with
	# it. Readiness is therefore a socket that answers, not one that exists.
	"$NUDGED" -c "$dir/nudge.yaml" "$@" >>"$dir/nudged.log" 2>&1 &
	pid=$!
	E2E_PIDS+=("$pid")
	echo "$pid" >"$dir/nudged.pid"
	for _ in $(seq 1 100); do
		[ -S "$dir/nudge.sock" ] &&
			"$NUDGECTL" -s "$dir/nudge.sock" status >/dev/null 2>&1 && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			local st=0
			wait "$pid" 2>/dev/null || st=$?
			tail -30 "$dir/nudged.log" >&2
			die "nudged ($*) exited during start-up with status $st$([ $st -gt 128 ] && echo " (signal $((st - 128)))"); log above"
		fi
		sleep 0.1
	done
	tail -30 "$dir/nudged.log" >&2
	die "nudged ($*) did not answer on $dir/nudge.sock within 10 s"
}

# wait_exit PID SECONDS: waits for PID (a child of this shell) to exit; sets
# EXIT_STATUS (or "timeout") and EXIT_TENTHS (tenths of a second waited).
wait_exit() {
	local pid=$1 limit=$(($2 * 10)) i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt "$limit" ]; do
		sleep 0.1
		i=$((i + 1))
	done
	EXIT_TENTHS=$i
	if kill -0 "$pid" 2>/dev/null; then
		EXIT_STATUS=timeout
		return 1
	fi
	wait "$pid" 2>/dev/null
	EXIT_STATUS=$?
	return 0
}

# stop_daemon DIR [SECONDS]: SIGTERM, then wait (default 5 s) for the exit.
# Sets EXIT_STATUS; a daemon still running afterwards is killed and
# EXIT_STATUS says "timeout".
stop_daemon() {
	local dir=$1 secs=${2:-5} pid
	pid=$(daemon_pid "$dir")
	[ -n "$pid" ] || die "stop_daemon: no daemon recorded for $dir"
	kill -TERM "$pid" 2>/dev/null
	if ! wait_exit "$pid" "$secs"; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -f "$dir/nudged.pid"
}

# kill9_daemon DIR: SIGKILL, reaped.
kill9_daemon() {
	local dir=$1 pid
	pid=$(daemon_pid "$dir")
	[ -n "$pid" ] || die "kill9_daemon: no daemon recorded for $dir"
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rm -f "$dir/nudged.pid"
}

# daemon_alive DIR: the daemon is running and answers status.
daemon_alive() {
	local pid
	pid=$(daemon_pid "$1")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
		"$NUDGECTL" -s "$1/nudge.sock" status >/dev/null 2>&1
}

# ctl DIR ARGS...: nudgectl against the daemon of DIR.
ctl() {
	local dir=$1
	shift
	"$NUDGECTL" -s "$dir/nudge.sock" "$@"
}

# ctl_json DIR ARGS...: nudgectl --json (global option, before the command).
ctl_json() {
	local dir=$1
	shift
	"$NUDGECTL" -s "$dir/nudge.sock" --json "$@"
}

# sql DIR QUERY: one query on the instance's database, rows '|'-separated.
sql() {
	sqlite3 -batch -noheader "file:$1/nudge.db?mode=ro" "$2"
}

# db_dump DIR: the whole database as SQL text (for before/after comparisons).
db_dump() {
	sqlite3 -batch "file:$1/nudge.db?mode=ro" .dump
}

# jq_get JSON_TEXT EXPR: a value from JSON with jq (raw output).
jq_get() {
	jq -r "$2" <<<"$1"
}

# gen_demo DIR N: contrib/gen-demo-data.py output (customers.csv, orders.csv) in DIR.
gen_demo() {
	"$PY" "$NUDGE_SRC/contrib/gen-demo-data.py" --customers "$2" --out "$1" >/dev/null ||
		die "contrib/gen-demo-data.py failed"
}

# spool_check DIR CHANNEL: every delivery of CHANNEL in state 'sent' has
# exactly one SPOOL/CHANNEL/<id>.(eml|json) and there is no other message
# file. Prints a reason and returns 1 otherwise.
spool_check() {
	"$PY" - "$1" "$2" <<'PY'
import os, re, sqlite3, sys
inst, channel = sys.argv[1], sys.argv[2]
ext = "eml" if channel == "email" else "json"
db = sqlite3.connect("file:%s/nudge.db?mode=ro" % inst, uri=True)
sent = {r[0] for r in db.execute(
    "SELECT id FROM deliveries WHERE channel = ? AND state = 'sent'", (channel,))}
d = os.path.join(inst, "spool", channel)
names = os.listdir(d) if os.path.isdir(d) else []
per_id, stray, temps = {}, [], []
for n in names:
    m = re.fullmatch(r"(\d+)\.(eml|json)", n)
    if m:
        per_id.setdefault(int(m.group(1)), []).append(n)
    elif ".tmp." in n:
        temps.append(n)
    else:
        stray.append(n)
problems = []
dups = {k: v for k, v in per_id.items() if len(v) > 1}
if dups:
    problems.append("%d delivery ids with more than one file, e.g. %s" % (len(dups), list(dups.items())[:3]))
missing = sorted(sent - set(per_id))
if missing:
    problems.append("%d sent deliveries without a spool file, e.g. %s" % (len(missing), missing[:5]))
extra = sorted(set(per_id) - sent)
if extra:
    problems.append("%d spool files for deliveries not recorded as sent, e.g. %s" % (len(extra), extra[:5]))
if stray:
    problems.append("unexpected files: %s" % stray[:5])
if any(not n.endswith("." + ext) for v in per_id.values() for n in v):
    problems.append("files with the wrong extension for %s" % channel)
if temps:
    # Left by a process killed between write and rename: never a complete
    # message, but a reader scanning the directory sees it.
    print("note: %d temporary file(s) left in %s: %s" % (len(temps), d, temps[:3]))
if problems:
    print("; ".join(problems))
    sys.exit(1)
print("%d sent %s deliveries, %d files, one each" % (len(sent), channel, len(per_id)))
PY
}

# check_log_clean DIR: the daemon's log has no sanitizer report or crash.
check_log_clean() {
	local bad
	bad=$(grep -nE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|SUMMARY: |assertion .* failed|Segmentation fault' \
		"$1/nudged.log" 2>/dev/null | head -5)
	if [ -z "$bad" ]; then
		pass "no sanitizer report or crash in $(basename "$1")/nudged.log"
	else
		fail "no sanitizer report or crash in $(basename "$1")/nudged.log" "(found:)"
		printf '%s\n' "$bad" | sed 's/^/    | /' >&2
	fi
}

# admin_results: reads "PASS what" / "FAIL what: why" lines (from a helper
# script talking to the socket) on stdin and counts them.
admin_results() {
	local verdict rest n=0
	while IFS=' ' read -r verdict rest; do
		case $verdict in
		PASS) pass "$rest" ;;
		FAIL) fail "$rest" ;;
		*) echo "$verdict $rest" ;;
		esac
		n=$((n + 1))
	done
	[ $n -gt 0 ] || fail "the socket client reported nothing"
}

# queue_report DIR: the deliveries by state, for a failure message.
queue_report() {
	echo "  deliveries by state (state|count|min next_attempt_at|max lease_until|a last_error):" >&2
	sqlite3 -batch -noheader "file:$1/nudge.db?mode=ro" \
		"SELECT state, count(*), datetime(min(next_attempt_at), 'unixepoch'),
		        datetime(max(lease_until), 'unixepoch'), max(last_error)
		 FROM deliveries GROUP BY state" 2>&1 | sed 's/^/    | /' >&2
	echo "  last lines of $(basename "$1")/nudged.log:" >&2
	tail -8 "$1/nudged.log" | sed 's/^/    | /' >&2
}
