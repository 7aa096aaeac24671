#!/usr/bin/env bash
# email.sh: email messages/s from nudged into Postfix's smtp-sink, against
# Postfix's own smtp-source on the same sink in the same run.
#
#   contrib/bench/email.sh [N]          (default N = 20000 customers)
#   PERF=1 contrib/bench/email.sh [N]   also record a perf profile of nudged
#
# N customers share a birthday (1990-01-15, zone UTC), so the shipped
# birthday rule (rules/birthday.*, copied) fires once at 2027-01-15T09:00Z
# and enqueues N emails. nudged runs on a frozen clock at 08:00Z with
# channels.email on the smtp transport (starttls "no") to smtp-sink on
# 127.0.0.1 and dispatch { batch: 200, concurrency: 8 } (the smtp transport's
# defaults; CONC= and BATCH= override). Measured:
#   total     wall time of `nudgectl advance --to 2027-01-15T09:00:00Z`
#             (evaluation + enqueue of N rows, then dispatch until settled)
#   enqueue   advance start -> the evaluator's "N deliveries enqueued" log line
#   dispatch  that line -> advance returns (claim, render, SMTP, record)
# and the practical limit: smtp-source -s CONC -d (as many sessions, each
# reusing its connection) sending N messages with a body of the same size as
# nudged's birthday message (measured from a spool copy), best of 2 runs.
# The result compares nudged's rates with smtp-source's (goal: >= 50%).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${1:-20000}
CONC=${CONC:-8}
BATCH=${BATCH:-200}
BENCH_CMD="contrib/bench/email.sh $N"
bench_init email
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] ||
	bench_die "needs /usr/sbin/smtp-sink and smtp-source (apt-get install postfix)"

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

# ---- nudged ----
inst=$BT/nudged
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
ctl "$inst" --json advance --to 2027-01-15T09:00:00Z >"$BT/advance.json" || bench_die "advance failed: $(cat "$BT/advance.json")"
t2=$(now_s)
busy_nudged=$(machine_busy)
perf_stop
c1=$(cpu_s "$NUDGED_PID")
k1=$(cpu_s "$SMTP_SINK_PID")
sleep 0.5
m1=$(sink_msgs)
t1=$(enqueued_at "$inst" "$N")
[ -n "$t1" ] || t1=$t0
sent=$(sqlite3 "$inst/nudge.db" "SELECT count(*) FROM deliveries WHERE state = 'sent'")
states=$(sqlite3 "$inst/nudge.db" "SELECT group_concat(state || '=' || n, ' ') FROM (SELECT state, count(*) n FROM deliveries GROUP BY state)")
stop_nudged "$inst"
[ "$sent" = "$N" ] || echo "bench: warning: $sent of $N deliveries sent ($states)" >&2
[ $((m1 - m0)) = "$N" ] || echo "bench: warning: smtp-sink counted $((m1 - m0)) messages, expected $N" >&2

total=$(fsub "$t2" "$t0")
enq=$(fsub "$t1" "$t0")
disp=$(fsub "$t2" "$t1")
cpu=$(fsub "$c1" "$c0")
cpu_msg=$(awk -v c="$cpu" -v n="$N" 'BEGIN { printf "%.0f", 1e6 * c / n }')
sink_cpu=$(fsub "$k1" "$k0")

# ---- smtp-source, same sink, same count, same size, -s = concurrency ----
best=
for run in 1 2; do
	m0=$(sink_msgs)
	machine_mark
	s0=$(now_s)
	timeout 600 /usr/sbin/smtp-source -s "$CONC" -m "$N" -l "$body" -d -N \
		-f shop@example.com -t bench@example.com -M bench.example.com "127.0.0.1:$port" ||
		echo "bench: smtp-source exited with $?" >&2
	s1=$(now_s)
	busy_src=$(machine_busy)
	sleep 0.5
	m1=$(sink_msgs)
	el=$(fsub "$s1" "$s0")
	echo "smtp-source run $run: $((m1 - m0)) messages in ${el}s ($(rate "$N" "$el")/s; $busy_src)"
	if [ -z "$best" ] || awk -v a="$el" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$el; fi
done

r_total=$(rate "$sent" "$total")
r_disp=$(rate "$sent" "$disp")
r_src=$(rate "$N" "$best")
echo "nudged: import ${N} customers $(fsub "$ti1" "$ti0")s; advance ${total}s = enqueue ${enq}s + dispatch ${disp}s; nudged CPU ${cpu}s (${cpu_msg} us/msg), smtp-sink CPU ${sink_cpu}s; message ${size} bytes; $busy_nudged"
result "email" "$sent msgs of $size B: nudged **$r_total msg/s** end to end (enqueue ${enq}s + dispatch ${disp}s; $r_disp msg/s dispatch only; ${cpu_msg} us CPU/msg); smtp-source -s $CONC -d **$r_src msg/s**; ratio **$(pct "$r_total" "$r_src")%** end to end, $(pct "$r_disp" "$r_src")% dispatch only (goal 50%); $busy_nudged"
