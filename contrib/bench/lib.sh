# shellcheck shell=bash
# lib.sh: helpers shared by the contrib/bench/*.sh benchmarks (sourced, not run).
#
# bench_init NAME   finds the source tree, builds (or reuses) a release build
#                   in $NUDGE_BENCH_BUILD (default build-bench), builds the
#                   HTTP sink, makes a private temporary directory $BT and
#                   installs an EXIT trap that stops every process this bench
#                   started (by pid, never by name) and removes $BT
#                   (BENCH_KEEP=1 keeps it).
# start_nudged DIR TIME   nudged -c DIR/nudge.yaml --now TIME --frozen; its
#                   standard error goes to DIR/nudged.log with a Unix time
#                   stamp in front of each line (so a bench can tell when the
#                   evaluator logged "N deliveries enqueued"); sets NUDGED_PID.
# ctl DIR ...       nudgectl on DIR/nudge.sock
# stop_nudged DIR   SIGTERM, wait (bounded), SIGKILL if it hangs
# start_sink        the C HTTP sink on a free port; sets SINK_PORT, SINK_PID
# sink_count        "POSTS BYTES" from the sink
# result NAME FIGURE  prints the one-line result and appends a row to
#                   RESULTS.md (not with PERF=1 or BENCH_NO_RESULTS=1)
#
# Everything listens on and connects to 127.0.0.1 only. Every wait here is
# bounded (a count of 0.1 s polls or an explicit timeout).
# shellcheck disable=SC2034

PY=/usr/bin/python3
BENCH_PIDS=()
# Settings from the environment that change what is measured, as given when
# the bench was started: they go in front of the command in RESULTS.md.
BENCH_ENV=
for _v in MALLOC_ARENA_MAX MALLOC_TRIM_THRESHOLD_ CONC BATCH ROUNDS MAXCONN MAX_SECONDS \
	FORECAST_TIMEOUT WRK_SECONDS MEMORY_GDB; do
	[ -n "${!_v:-}" ] && BENCH_ENV+="$_v=${!_v} "
done
unset _v

bench_die() {
	echo "bench: $*" >&2
	exit 1
}

bench_init() {
	BENCH_NAME=$1
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	BENCH_DIR=$here
	SRC=$(cd "$here/../.." && pwd)
	BUILD=${NUDGE_BENCH_BUILD:-$SRC/build-bench}
	case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
	RESULTS=$BENCH_DIR/RESULTS.md
	for tool in sqlite3 "$PY" cc pkg-config; do
		command -v "$tool" >/dev/null || bench_die "$tool is needed (see contrib/bench/README.md)"
	done
	# Always (re)build: an incremental build is quick, and a stale binary
	# would measure yesterday's code. If the tree does not build at this
	# moment (someone's half-edited file) but an earlier build exists, that
	# build is measured, with a warning; the row in RESULTS.md names it.
	echo "bench: building nudge (Release) in $BUILD" >&2
	if [ ! -f "$BUILD/CMakeCache.txt" ]; then
		# -Wno-error=maybe-uninitialized: GCC 12 at -O3 warns about code it
		# cannot see through; a benchmark build must not fail on a warning.
		cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DNUDGE_TESTS=OFF \
			"-DCMAKE_C_FLAGS=-Wno-error=maybe-uninitialized -g" >/dev/null ||
			bench_die "cmake configure failed"
	fi
	if ! cmake --build "$BUILD" -j2 >"$BUILD/bench-build.log" 2>&1; then
		[ -x "$BUILD/nudged" ] && [ -x "$BUILD/nudgectl" ] ||
			bench_die "build failed: see $BUILD/bench-build.log"
		echo "bench: warning: the build failed (see $BUILD/bench-build.log); measuring the previous binaries" >&2
	fi
	SINK=$BUILD/sink-http
	if [ ! -x "$SINK" ] || [ "$BENCH_DIR/sink-http.c" -nt "$SINK" ]; then
		# shellcheck disable=SC2046
		cc -O2 -Wall -o "$SINK" "$BENCH_DIR/sink-http.c" \
			$(pkg-config --cflags --libs libmicrohttpd) || bench_die "cannot build sink-http"
	fi
	BT=$(mktemp -d "${TMPDIR:-/tmp}/nudge-bench-$BENCH_NAME.XXXXXX") || bench_die "mktemp failed"
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# A private copy of the binaries: a rebuild of $BUILD while the bench
	# runs cannot change what is measured, and the row in RESULTS.md names
	# exactly the binary that ran (its build-id and build time).
	mkdir -p "$BT/bin"
	cp "$BUILD/nudged" "$BUILD/nudgectl" "$BT/bin/" || bench_die "cannot copy the binaries"
	NUDGED=$BT/bin/nudged
	NUDGECTL=$BT/bin/nudgectl
	local bid
	bid=$(readelf -n "$NUDGED" 2>/dev/null | awk '/Build ID/ { print substr($3, 1, 8) }')
	BENCH_BIN="nudged ${bid:-$(sha256sum "$NUDGED" | cut -c1-8)}, built $(date -u -r "$BUILD/nudged" +%H:%MZ)"
}

bench_cleanup() {
	local pid
	for pid in "${BENCH_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null
			for _ in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null
		fi
	done
	wait 2>/dev/null
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "bench: kept $BT" >&2
	else
		rm -rf "$BT"
	fi
}

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Seconds since the epoch with nanoseconds.
now_s() { date +%s.%N; }
# a - b with 3 decimals
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
# n / s with 0 decimals
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "inf" }'; }
# a / b as a percentage with 0 decimals
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "?" }'; }

# A time stamp in front of every line of standard input (line-buffered).
STAMP='import sys, time
for line in sys.stdin:
    sys.stdout.write("%.6f %s" % (time.time(), line))
    sys.stdout.flush()'

start_nudged() {
	local dir=$1 at=$2
	rm -f "$dir/nudge.sock"
	(cd "$dir" && exec "$NUDGED" -c nudge.yaml --now "$at" --frozen) \
		2> >("$PY" -u -c "$STAMP" >"$dir/nudged.log") &
	NUDGED_PID=$!
	BENCH_PIDS+=("$NUDGED_PID")
	for _ in $(seq 1 100); do
		[ -S "$dir/nudge.sock" ] && return 0
		kill -0 "$NUDGED_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$dir/nudged.log" >&2
	bench_die "nudged did not start"
}

# The nudged pid (the subshell execs it, so $! is nudged itself).
ctl() {
	local dir=$1
	shift
	"$NUDGECTL" -s "$dir/nudge.sock" "$@"
}

stop_nudged() {
	local dir=$1
	kill -TERM "$NUDGED_PID" 2>/dev/null || return 0
	for _ in $(seq 1 300); do
		kill -0 "$NUDGED_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$NUDGED_PID" 2>/dev/null || true
	wait "$NUDGED_PID" 2>/dev/null || true
}

# Time stamp of the evaluator's "N deliveries enqueued" line that reports
# at least $2 deliveries (the fire the bench is about).
enqueued_at() {
	local dir=$1 n=$2
	awk -v n="$n" '/deliveries enqueued/ { for (i = 1; i <= NF; i++) if ($i == "deliveries") k = $(i - 1); if (k + 0 >= n) { print $1; exit } }' \
		"$dir/nudged.log"
}

start_sink() {
	local threads=${1:-2}
	"$SINK" 0 "$threads" 1800 >"$BT/sink.out" 2>"$BT/sink.err" &
	SINK_PID=$!
	BENCH_PIDS+=("$SINK_PID")
	SINK_PORT=
	for _ in $(seq 1 50); do
		SINK_PORT=$(head -n1 "$BT/sink.out" 2>/dev/null)
		[ -n "$SINK_PORT" ] && return 0
		sleep 0.1
	done
	bench_die "sink-http did not start: $(cat "$BT/sink.err")"
}

sink_count() {
	curl -s --max-time 5 "http://127.0.0.1:$SINK_PORT/count"
}

# Customers for the delivery benches: N customers born on 1990-01-15, all in
# UTC, with an email, a +86 mobile number and both consents, so one birthday
# fire at 2027-01-15T09:00Z enqueues all N.
gen_customers() {
	local n=$1 out=$2
	"$PY" - "$n" "$out" <<'PY'
import sys
n, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w", encoding="utf-8", newline="") as f:
    f.write("id,name,first_name,email,phone,birthday,tz,tier,consent_email,consent_sms\n")
    for i in range(n):
        f.write("B%07d,Bench Customer %d,Bench%d,bench%d@example.com,+86138%08d,1990-01-15,UTC,normal,yes,yes\n"
                % (i, i, i, i, i))
PY
}

# outbox_states DB: "pending=N sent=N ..." of a bench instance's outbox.
outbox_states() {
	sqlite3 "$1" "SELECT group_concat(state || '=' || n, ' ') FROM (SELECT state, count(*) n FROM deliveries GROUP BY state)"
}

# result NAME FIGURE: one line on stdout, one row in RESULTS.md.
result() {
	local name=$1 figure=$2 rev cmd="$BENCH_ENV$BENCH_CMD"
	rev=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo "?")
	echo "$name: $figure"
	# A profiled run is slower than a plain one: its figure is not logged.
	if [ "${BENCH_NO_RESULTS:-0}" != 1 ] && [ "${PERF:-0}" != 1 ]; then
		[ -f "$RESULTS" ] || printf '# nudge benchmark results\n\n## Log\n\n| date (UTC) | rev | command | result |\n| --- | --- | --- | --- |\n' >"$RESULTS"
		printf '| %s | %s (%s) | `%s` | %s |\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$rev" "$BENCH_BIN" "$cmd" \
			"$figure" >>"$RESULTS"
	fi
}

# Every process this bench started is in BENCH_PIDS; perf, if asked for,
# samples nudged alone: PERF=1 contrib/bench/email.sh records a call graph of
# the measured phase into $BT/perf.data and prints the top of the report.
perf_start() {
	PERF_PID=
	[ "${PERF:-0}" = 1 ] || return 0
	command -v perf >/dev/null || bench_die "PERF=1 needs perf (apt-get install linux-perf)"
	perf record -q --call-graph "${PERF_CALLGRAPH:-dwarf,16384}" -F "${PERF_FREQ:-250}" -o "$BT/perf.data" -p "$NUDGED_PID" 2>"$BT/perf.err" &
	PERF_PID=$!
	BENCH_PIDS+=("$PERF_PID")
	sleep 0.3
}

perf_stop() {
	[ -n "${PERF_PID:-}" ] || return 0
	kill -INT "$PERF_PID" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$PERF_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "---- perf: self time, top 15 ($BT/perf.data) ----"
	perf report -i "$BT/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
		grep -E '^ +[0-9]' | head -15
	echo "---- perf: by thread ----"
	perf report -i "$BT/perf.data" --no-children --sort pid --stdio -g none 2>/dev/null |
		grep -E '^ +[0-9]' | head -10
	echo "---- perf: nudged's own functions, inclusive ----"
	perf script -i "$BT/perf.data" -F comm,tid,ip,sym,dso 2>/dev/null >"$BT/perf.txt"
	"$PY" "$BENCH_DIR/perf-summary.py" "$BT/perf.txt" --top 25 \
		--focus sqlite3_prepare_v2 --focus sqlite3_step --focus sqlite3_exec
	BENCH_KEEP=1
}

# CPU seconds (user + system) a process has used so far, all threads.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' \
		"/proc/$1/stat" 2>/dev/null || echo 0
}

# The machine is shared: every result notes how busy it was. machine_mark
# remembers /proc/stat; machine_busy prints "busy B% of C cores, load L"
# for the time since the mark (B counts every process, ours included).
machine_mark() {
	MACHINE_STAT=$(awk '/^cpu / { idle = $5 + $6; t = 0; for (i = 2; i <= NF; i++) t += $i; print t, idle }' /proc/stat)
}
machine_busy() {
	local now
	now=$(awk '/^cpu / { idle = $5 + $6; t = 0; for (i = 2; i <= NF; i++) t += $i; print t, idle }' /proc/stat)
	awk -v a="$MACHINE_STAT" -v b="$now" -v c="$(nproc)" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
		split(a, x, " "); split(b, y, " "); t = y[1] - x[1]; i = y[2] - x[2]; u = 0
		if (t > 0) u = 100 * (t - i) / t
		printf "machine busy %.0f%% of %d cores, load %s", u, c, l }'
}

# wrk against the sink: the receiver-only limit. POSTs of $2 bytes (JSON
# content type) for $3 seconds over $4 connections and 2 threads; prints
# requests/s. wrk is a bench-only dependency (apt-get install wrk).
wrk_limit() {
	local url=$1 size=$2 secs=$3 conns=$4
	command -v wrk >/dev/null || bench_die "wrk is needed for the receiver-only limit (apt-get install wrk)"
	cat >"$BT/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"pad":"' .. string.rep("x", math.max($size - 10, 1)) .. '"}'
wrk.headers["Content-Type"] = "application/json"
LUA
	timeout $((secs + 30)) wrk -t2 -c"$conns" -d"${secs}s" -s "$BT/post.lua" "$url" >"$BT/wrk.txt" 2>&1 ||
		bench_die "wrk failed: $(cat "$BT/wrk.txt")"
	awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$BT/wrk.txt"
}

# http_bench NAME N ACTION-YAML CHANNEL CHANNEL-YAML
# The webhook and sms benches: N customers, one birthday fire of a care rule
# whose one action is ACTION-YAML (SINK_URL in it is replaced by the sink's
# URL), channels.CHANNEL = CHANNEL-YAML, dispatch { batch: $BATCH,
# concurrency: $CONC }, into sink-http; then wrk against the same sink with
# POSTs of the same size over as many connections as nudged may open
# (concurrency x max_connections). Sets H_* variables for the caller.
http_bench() {
	local name=$1 n=$2 action=$3 channel=$4 chyaml=$5 inst
	start_sink 2
	local url="http://127.0.0.1:$SINK_PORT"
	mkdir -p "$BT/rules"
	cat >"$BT/rules/bench-$name.yaml" <<YAML
name: bench-$name
category: care
trigger: { anniversary: birthday, at: "09:00" }
coupon: { percent_off: 10, valid_days: 14, prefix: BENCH }
actions:
  - ${action//SINK_URL/$url}
YAML
	gen_customers "$n" "$BT/customers.csv"
	inst=$BT/nudged
	mkdir -p "$inst"
	cat >"$inst/nudge.yaml" <<YAML
database: nudge.db
rules: $BT/rules
calendars: $SRC/calendars
timezone: UTC
admin_socket: nudge.sock
spool_dir: spool
dispatch: { batch: $BATCH, concurrency: $CONC }
channels:
  $channel: ${chyaml//SINK_URL/$url}
YAML
	start_nudged "$inst" 2027-01-15T08:00:00Z
	ctl "$inst" import customers "$BT/customers.csv" >/dev/null || bench_die "import failed"
	local p0 b0 p1 b1 c0 c1 t0 t1 t2
	read -r p0 b0 < <(sink_count)
	c0=$(cpu_s "$NUDGED_PID")
	local s0
	s0=$(cpu_s "$SINK_PID")
	perf_start
	machine_mark
	t0=$(now_s)
	ctl "$inst" --json advance --to 2027-01-15T09:00:00Z >"$BT/advance.json" ||
		bench_die "advance failed: $(cat "$BT/advance.json")"
	t2=$(now_s)
	H_BUSY=$(machine_busy)
	perf_stop
	c1=$(cpu_s "$NUDGED_PID")
	H_SINK_CPU=$(fsub "$(cpu_s "$SINK_PID")" "$s0")
	read -r p1 b1 < <(sink_count)
	t1=$(enqueued_at "$inst" "$n")
	[ -n "$t1" ] || t1=$t0
	H_SENT=$(sqlite3 "$inst/nudge.db" "SELECT count(*) FROM deliveries WHERE state = 'sent'")
	H_STATES=$(outbox_states "$inst/nudge.db")
	stop_nudged "$inst"
	H_POSTS=$((p1 - p0))
	[ "$H_SENT" = "$n" ] || echo "bench: warning: $H_SENT of $n deliveries sent ($H_STATES)" >&2
	[ "$H_POSTS" = "$n" ] || echo "bench: warning: the sink counted $H_POSTS requests, expected $n" >&2
	H_SIZE=$(((b1 - b0) / (H_POSTS > 0 ? H_POSTS : 1)))
	H_TOTAL=$(fsub "$t2" "$t0")
	H_ENQ=$(fsub "$t1" "$t0")
	H_DISP=$(fsub "$t2" "$t1")
	H_CPU=$(fsub "$c1" "$c0")
	H_CPU_MSG=$(awk -v c="$H_CPU" -v n="$n" 'BEGIN { printf "%.0f", 1e6 * c / n }')
	H_RATE=$(rate "$H_SENT" "$H_TOTAL")
	H_RATE_DISP=$(rate "$H_SENT" "$H_DISP")
	# The receiver alone, same sink, same body size, same connection count.
	local conns=$((CONC * MAXCONN))
	machine_mark
	H_WRK=$(wrk_limit "$url/$name" "$H_SIZE" "${WRK_SECONDS:-5}" "$conns")
	H_WRK_BUSY=$(machine_busy)
	H_CONNS=$conns
	echo "nudged: advance ${H_TOTAL}s = enqueue ${H_ENQ}s + dispatch ${H_DISP}s; $H_SENT sent, sink counted $H_POSTS requests of $H_SIZE body bytes; nudged CPU ${H_CPU}s (${H_CPU_MSG} us/request), sink CPU ${H_SINK_CPU}s; $H_BUSY"
	echo "wrk -t2 -c$conns -d${WRK_SECONDS:-5}s, POST $H_SIZE bytes: $H_WRK requests/s; $H_WRK_BUSY"
}
