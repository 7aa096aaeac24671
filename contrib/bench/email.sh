#!/usr/bin/env bash
# email.sh: email messages/s from nudged into Postfix's smtp-sink, against
# two limits measured on the same sink in the same run.
#
#   contrib/bench/email.sh [N]          (default N = 20000 customers)
#   ROUNDS=5 contrib/bench/email.sh     more rounds (default 3)
#   PERF=1 contrib/bench/email.sh [N]   also record a perf profile of nudged
#
# N customers share a birthday (1990-01-15, zone UTC), so the shipped
# birthday rule (rules/birthday.*, copied) fires once at 2027-01-15T09:00Z
# and enqueues N emails. nudged runs on a frozen clock at 08:00Z with
# channels.email on the smtp transport (starttls "no") to smtp-sink on
# 127.0.0.1 and dispatch { batch: 200, concurrency: 8 } (the smtp transport's
# defaults; CONC= and BATCH= override). Measured for nudged:
#   total     wall time of `nudgectl advance --to 2027-01-15T09:00:00Z`
#             (evaluation + enqueue of N rows, then dispatch until settled)
#   enqueue   advance start -> the evaluator's "N deliveries enqueued" log line
#   dispatch  that line -> advance returns (claim, render, SMTP, record)
# and the limits, both sending N copies of a message the size of nudged's:
#   smtp-source    Postfix's load generator: smtp-source -s CONC -d (as many
#                  sessions, each reusing its connection, all on one event
#                  loop); the practical limit of the machine and the sink.
#   libESMTP alone smtp-libesmtp.c: the library the smtp transport is built
#                  on, CONC threads sending sessions of BATCH ready-made
#                  messages (nudged's own message, from a spool copy), with
#                  no database, rendering or MIME work.
# Each round runs nudged (a fresh instance and database), then smtp-source,
# then libESMTP alone; the result gives the median of ROUNDS rounds of each
# and compares the medians (goal: nudged >= 50% of smtp-source). The machine
# is shared, so single runs of any of the three vary by 20% or more.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${1:-20000}
CONC=${CONC:-8}
BATCH=${BATCH:-200}
ROUNDS=${ROUNDS:-3}
[ "${PERF:-0}" = 1 ] && ROUNDS=1 # one profiled round
BENCH_CMD="contrib/bench/email.sh $N"
bench_init email
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] ||
	bench_die "needs /usr/sbin/smtp-sink and smtp-source (apt-get install postfix)"
LIBESMTP_ALONE=$BUILD/smtp-libesmtp
if [ ! -x "$LIBESMTP_ALONE" ] || [ "$BENCH_DIR/smtp-libesmtp.c" -nt "$LIBESMTP_ALONE" ]; then
	# shellcheck disable=SC2046
	cc -O2 -Wall -o "$LIBESMTP_ALONE" "$BENCH_DIR/smtp-libesmtp.c" -pthread \
		$(pkg-config --cflags --libs libesmtp-1.0) || bench_die "cannot build smtp-libesmtp"
fi

mkdir -p "$BT/rules"
cp "$SRC"/rules/birthday.* "$BT/rules/"
gen_customers "$N" "$BT/customers.csv"

write_config() { # DIR EMAIL-CHANNEL-YAML
	mkdir -p "$1"
	cat >"$1/nudge.yaml" <<YAML
database: nudge.db
rules: $BT/rules
calendars: $SRC/calendars
timezone: UTC
admin_socket: nudge.sock
spool_dir: spool
log_level: info
dispatch: { batch: $BATCH, concurrency: $CONC }
channels:
  email: $2
YAML
}

# ---- the size of one birthday message, from a spool run with 1 customer ----
write_config "$BT/size" '{ transport: spool, from: "Shop 商店 <shop@example.com>" }'
head -n 2 "$BT/customers.csv" >"$BT/one.csv"
start_nudged "$BT/size" 2027-01-15T08:00:00Z
ctl "$BT/size" import customers "$BT/one.csv" >/dev/null || bench_die "import (size run) failed"
ctl "$BT/size" advance --to 2027-01-15T09:00:00Z >/dev/null || bench_die "advance (size run) failed"
stop_nudged "$BT/size"
eml=$(find "$BT/size/spool/email" -name '*.eml' | head -n1)
[ -n "$eml" ] || bench_die "the size run wrote no message"
size=$(wc -c <"$eml")
# smtp-source adds From/To/Date/Message-Id (~100 bytes) to its -l body.
body=$((size > 200 ? size - 100 : 100))

# ---- the sink ----
port=$(free_port)
sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u root)
/usr/sbin/smtp-sink -c "${sink_user[@]}" "127.0.0.1:$port" 1000 >"$BT/sink.txt" 2>&1 &
BENCH_PIDS+=($!)
SMTP_SINK_PID=$!
for _ in $(seq 1 50); do
	"$PY" -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
	sleep 0.1
done
# smtp-sink -c rewrites one counter line ("sess=.. quit=.. mesg=N") with \r.
sink_msgs() { tr '\r' '\n' <"$BT/sink.txt" | grep -o 'mesg=[0-9]*' | tail -n1 | cut -d= -f2; }

# ---- one nudged run: a fresh instance, import, advance; sets R_* ----
run_nudged() {
	local inst=$BT/nudged$1 ti0 ti1 m0 m1 c0 c1 k0 k1 t0 t1 t2 sent states
	write_config "$inst" "{ transport: smtp, host: 127.0.0.1, port: $port, starttls: \"no\", from: \"Shop 商店 <shop@example.com>\", helo: bench.example.com }"
	start_nudged "$inst" 2027-01-15T08:00:00Z
	ti0=$(now_s)
	ctl "$inst" import customers "$BT/customers.csv" >/dev/null || bench_die "import failed"
	ti1=$(now_s)
	m0=$(sink_msgs)
	c0=$(cpu_s "$NUDGED_PID")
	k0=$(cpu_s "$SMTP_SINK_PID")
	perf_start
	machine_mark
	t0=$(now_s)
	ctl "$inst" --json advance --to 2027-01-15T09:00:00Z >"$inst/advance.json" || bench_die "advance failed: $(cat "$inst/advance.json")"
	t2=$(now_s)
	R_BUSY=$(machine_busy)
	perf_stop
	c1=$(cpu_s "$NUDGED_PID")
	k1=$(cpu_s "$SMTP_SINK_PID")
	sleep 0.5
	m1=$(sink_msgs)
	t1=$(enqueued_at "$inst" "$N")
	[ -n "$t1" ] || t1=$t0
	sent=$(sqlite3 "$inst/nudge.db" "SELECT count(*) FROM deliveries WHERE state = 'sent'")
	states=$(outbox_states "$inst/nudge.db")
	stop_nudged "$inst"
	[ "$sent" = "$N" ] || echo "bench: warning: $sent of $N deliveries sent ($states)" >&2
	[ $((m1 - m0)) = "$N" ] || echo "bench: warning: smtp-sink counted $((m1 - m0)) messages, expected $N" >&2
	R_SENT=$sent
	R_IMPORT=$(fsub "$ti1" "$ti0")
	R_TOTAL=$(fsub "$t2" "$t0")
	R_ENQ=$(fsub "$t1" "$t0")
	R_DISP=$(fsub "$t2" "$t1")
	R_CPU=$(fsub "$c1" "$c0")
	R_CPU_MSG=$(awk -v c="$R_CPU" -v n="$N" 'BEGIN { printf "%.0f", 1e6 * c / n }')
	R_SINK_CPU=$(fsub "$k1" "$k0")
}

# median of the numbers given
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

r_total=() r_disp=() r_cpu=() r_src=() r_lib=() r_enq=()
for round in $(seq 1 "$ROUNDS"); do
	run_nudged "$round"
	r_total+=("$(rate "$R_SENT" "$R_TOTAL")")
	r_disp+=("$(rate "$R_SENT" "$R_DISP")")
	r_cpu+=("$R_CPU_MSG")
	r_enq+=("$R_ENQ")
	echo "round $round: nudged: import $N customers ${R_IMPORT}s; advance ${R_TOTAL}s = enqueue ${R_ENQ}s + dispatch ${R_DISP}s (${r_disp[-1]} msg/s); nudged CPU ${R_CPU}s (${R_CPU_MSG} us/msg), smtp-sink CPU ${R_SINK_CPU}s; $R_BUSY"

	m0=$(sink_msgs)
	machine_mark
	s0=$(now_s)
	timeout 600 /usr/sbin/smtp-source -s "$CONC" -m "$N" -l "$body" -d -N \
		-f shop@example.com -t bench@example.com -M bench.example.com "127.0.0.1:$port" ||
		echo "bench: smtp-source exited with $?" >&2
	s1=$(now_s)
	busy=$(machine_busy)
	sleep 0.5
	m1=$(sink_msgs)
	el=$(fsub "$s1" "$s0")
	r_src+=("$(rate "$N" "$el")")
	echo "round $round: smtp-source: $((m1 - m0)) messages in ${el}s (${r_src[-1]}/s; $busy)"

	machine_mark
	out=$("$LIBESMTP_ALONE" "127.0.0.1:$port" "$CONC" "$BATCH" "$N" "$eml") ||
		echo "bench: smtp-libesmtp failed: $out" >&2
	busy=$(machine_busy)
	el=$(awk '{ print $4 }' <<<"$out")
	r_lib+=("$(rate "$N" "$el")")
	echo "round $round: libESMTP alone: $out (${r_lib[-1]}/s; $busy)"
done

mt=$(median "${r_total[@]}")
md=$(median "${r_disp[@]}")
ms=$(median "${r_src[@]}")
ml=$(median "${r_lib[@]}")
mc=$(median "${r_cpu[@]}")
result "email" "$N msgs of $size B, median of $ROUNDS rounds: nudged **$mt msg/s** end to end ($md msg/s dispatch only; $mc us CPU/msg); smtp-source -s $CONC -d **$ms msg/s**; libESMTP alone ($CONC threads) **$ml msg/s**; nudged/smtp-source **$(pct "$mt" "$ms")%** end to end, $(pct "$md" "$ms")% dispatch only (goal 50%); nudged/libESMTP alone $(pct "$md" "$ml")% dispatch only; rounds: nudged ${r_total[*]}, smtp-source ${r_src[*]}, libESMTP ${r_lib[*]}"
