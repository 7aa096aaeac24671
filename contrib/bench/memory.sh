#!/usr/bin/env bash
# memory.sh: is nudged's memory flat over many deliveries?
#
#   contrib/bench/memory.sh [TOTAL [CUSTOMERS]]   (default 1000000 deliveries, 20000 customers)
#   MAX_SECONDS=900 bounds the delivery phase (default 900 s): when it runs
#   out, the bench stops after the current day and reports what it reached.
#
# A care rule with a daily trigger (09:00) and one webhook action goes to
# CUSTOMERS customers; the frozen clock is advanced one day at a time
# (`nudgectl advance --to DAY-10:00Z`, each fire enqueued and dispatched to
# the end) for ceil(TOTAL / CUSTOMERS) days, into contrib/bench/sink-http.c.
# Every second a sampler writes nudged's VmRSS, RssAnon (heap: malloc'd
# memory, SQLite's page caches), RssFile (file-backed: the binary, the
# libraries and the mmap'd database) and VmHWM from /proc/PID/status, plus
# the sink's request count, to a CSV (MEMORY_CSV, default
# /tmp/nudge-bench-memory.csv, outside the source tree); a tenth of it is
# printed at the end.
#
# Reported: RSS at start (after the import, before the first fire), after
# the first day, peak and end, and the growth of RssAnon from the end of
# the first day to the end and over the second half of the run, per 100,000
# deliveries. The database grows by
# one deliveries row and one timeline row per delivery, so RssFile grows
# with the mmap'd file (up to mmap_size) and the page caches fill up to
# their cache_size: growth that stops is a cache, growth that does not stop
# is a leak.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TOTAL=${1:-1000000}
C=${2:-20000}
MAX_SECONDS=${MAX_SECONDS:-900}
CONC=${CONC:-4}
BATCH=${BATCH:-200}
BENCH_CMD="contrib/bench/memory.sh $TOTAL $C"
bench_init memory
DAYS=$(((TOTAL + C - 1) / C))

start_sink 2
mkdir -p "$BT/rules"
cat >"$BT/rules/bench-daily.yaml" <<YAML
name: bench-daily
category: care
trigger: { daily: { at: "09:00" } }
actions:
  - webhook: { url: "http://127.0.0.1:$SINK_PORT/hooks/daily" }
YAML
gen_customers "$C" "$BT/customers.csv"
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
  webhook: { transport: http, timeout: 10, max_connections: 16 }
YAML
start_nudged "$inst" 2027-01-01T08:00:00Z
ctl "$inst" import customers "$BT/customers.csv" >/dev/null || bench_die "import failed"

csv=$BT/memory.csv
echo "seconds,vmrss_kb,rss_anon_kb,rss_file_kb,vmhwm_kb,requests" >"$csv"
sample() {
	local t=$1
	awk -v t="$t" -v req="$(sink_count | cut -d' ' -f1)" '
		/^VmRSS:/ { rss = $2 } /^RssAnon:/ { anon = $2 } /^RssFile:/ { file = $2 } /^VmHWM:/ { hwm = $2 }
		END { if (rss != "") printf "%s,%s,%s,%s,%s,%s\n", t, rss, anon, file, hwm, req }' \
		"/proc/$NUDGED_PID/status" 2>/dev/null
}
T0=$(now_s)
(
	# Bounded: at most MAX_SECONDS + 120 samples, and only while nudged lives.
	for _ in $(seq 1 $((MAX_SECONDS + 120))); do
		kill -0 "$NUDGED_PID" 2>/dev/null || break
		sample "$(fsub "$(now_s)" "$T0")" >>"$csv"
		sleep 1
	done
) &
SAMPLER=$!
BENCH_PIDS+=("$SAMPLER")

# Where the heap goes (MEMORY_GDB=0 to skip): between two advances, with
# nudged idle, gdb asks SQLite how much it holds (sqlite3_memory_used():
# page caches, statements, schema) and glibc how much is in use against
# what it took from the system (malloc_stats(), printed to nudged's log).
# This is what separates a cache that fills from a leak or fragmentation.
probe() { # LABEL
	[ "${MEMORY_GDB:-1}" = 1 ] && command -v gdb >/dev/null || return 0
	local before sq
	before=$(wc -l <"$inst/nudged.log")
	sq=$(timeout 60 gdb -p "$NUDGED_PID" -batch -nx \
		-ex 'print ((long long (*)(void)) sqlite3_memory_used)()' \
		-ex 'call ((void (*)(void)) malloc_stats)()' 2>/dev/null | awk '/^\$1 = / { print $3 }')
	sleep 0.3
	tail -n +"$((before + 1))" "$inst/nudged.log" | awk -v l="$1" -v sq="$sq" '
		/Total \(incl. mmap\)/ { t = 1 } t && /system bytes/ { sys = $NF } t && /in use bytes/ { use = $NF }
		/^[0-9.]+ Arena [0-9]+:/ { arenas++ }
		END { printf "%s: sqlite3_memory_used %.1f MB; malloc in use %.1f MB of %.1f MB from the system (%d arenas)\n", l, sq / 1048576, use / 1048576, sys / 1048576, arenas }'
}
start_line=$(sample 0)
day_line=
half_line=
days_done=0
machine_mark
for d in $(seq 1 "$DAYS"); do
	to=$(date -u -d "2027-01-01 +$((d - 1)) days" +%Y-%m-%dT10:00:00Z)
	ctl "$inst" advance --to "$to" >/dev/null || bench_die "advance to $to failed"
	days_done=$d
	el=$(fsub "$(now_s)" "$T0")
	[ "$d" = 1 ] && day_line=$(sample "$el") && PROBE1=$(probe "after day 1")
	[ "$d" = $(((DAYS + 1) / 2)) ] && half_line=$(sample "$el") && PROBE2=$(probe "after day $d")
	if [ $((d % 5)) = 0 ] || [ "$d" = "$DAYS" ]; then
		echo "day $d/$DAYS: $(sink_count | cut -d' ' -f1) requests, ${el}s, $(sample "$el" | cut -d, -f2) kB RSS"
	fi
	if awk -v e="$el" -v m="$MAX_SECONDS" 'BEGIN { exit !(e > m) }'; then
		echo "bench: MAX_SECONDS=$MAX_SECONDS reached after day $d" >&2
		break
	fi
done
T1=$(now_s)
busy=$(machine_busy)
end_line=$(sample "$(fsub "$T1" "$T0")")
echo "$end_line" >>"$csv"
PROBE3=$(probe "at the end")
# Is the retained memory free memory glibc could give back? malloc_trim(0)
# releases free pages of every arena; RSS after it shows how much of the
# growth was freed-but-kept memory rather than memory in use.
TRIM=
if [ "${MEMORY_GDB:-1}" = 1 ] && command -v gdb >/dev/null; then
	timeout 60 gdb -p "$NUDGED_PID" -batch -nx -ex 'print ((int (*)(unsigned long)) malloc_trim)(0)' \
		>/dev/null 2>&1
	trim_line=$(sample "$(fsub "$(now_s)" "$T0")")
	TRIM="after malloc_trim(0) via gdb: VmRSS $(awk -v k="$(echo "$trim_line" | cut -d, -f2)" 'BEGIN { printf "%.1f", k / 1024 }') MB, RssAnon $(awk -v k="$(echo "$trim_line" | cut -d, -f3)" 'BEGIN { printf "%.1f", k / 1024 }') MB"
fi
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
sent=$(sqlite3 "$inst/nudge.db" "SELECT count(*) FROM deliveries WHERE state = 'sent'")
dbsize=$(du -k "$inst"/nudge.db* | awk '{ s += $1 } END { print s }')
stop_nudged "$inst"
MEMORY_CSV=${MEMORY_CSV:-/tmp/nudge-bench-memory.csv}
cp "$csv" "$MEMORY_CSV"

field() { echo "$1" | cut -d, -f"$2"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
peak=$(tail -n +2 "$csv" | cut -d, -f2 | sort -n | tail -n1)
peak_anon=$(tail -n +2 "$csv" | cut -d, -f3 | sort -n | tail -n1)
el=$(fsub "$T1" "$T0")
per100k() { # LINE-A LINE-B: RssAnon growth in kB per 100,000 requests between two samples
	awk -v a="$(field "$1" 3)" -v b="$(field "$2" 3)" -v n1="$(field "$1" 6)" -v n2="$(field "$2" 6)" \
		'BEGIN { if (n2 > n1) printf "%+.0f", (b - a) / ((n2 - n1) / 100000); else print "?" }'
}
growth=$(per100k "$day_line" "$end_line")
growth2=$(per100k "${half_line:-$day_line}" "$end_line")
echo "samples: $MEMORY_CSV ($(($(wc -l <"$csv") - 1)) rows); database $(mb "$dbsize") MB at the end"
echo "seconds,vmrss_kb,rss_anon_kb,rss_file_kb,vmhwm_kb,requests (every tenth of the run):"
rows=$(($(wc -l <"$csv") - 1))
tail -n +2 "$csv" | awk -v k=$(((rows + 9) / 10)) '{ last = $0 } NR % k == 1 || k <= 1 { print; p = NR } END { if (p != NR) print last }' | sed 's/^/  /'
[ -n "${PROBE1:-}" ] && printf '%s\n' "$PROBE1" "${PROBE2:-}" "$PROBE3" "$TRIM"
echo "RssAnon growth: $growth kB per 100k deliveries after day 1, $growth2 kB per 100k over the second half"
echo "RSS (MB) start $(mb "$(field "$start_line" 2)") (anon $(mb "$(field "$start_line" 3)")), after day 1 $(mb "$(field "$day_line" 2)") (anon $(mb "$(field "$day_line" 3)")), peak $(mb "$peak") (anon $(mb "$peak_anon")), end $(mb "$(field "$end_line" 2)") (anon $(mb "$(field "$end_line" 3)"), file $(mb "$(field "$end_line" 4)"))"
result "memory" "$sent deliveries (webhooks, $C customers x $days_done daily fires) in ${el}s ($(rate "$sent" "$el")/s): VmRSS start $(mb "$(field "$start_line" 2)") MB, after day 1 $(mb "$(field "$day_line" 2)") MB, peak **$(mb "$peak") MB**, end **$(mb "$(field "$end_line" 2)") MB**; RssAnon after day 1 $(mb "$(field "$day_line" 3)") -> end $(mb "$(field "$end_line" 3)") MB ($growth kB per 100k deliveries after day 1, **$growth2 kB per 100k over the second half**); database $(mb "$dbsize") MB; ${PROBE3:+$PROBE3; }${TRIM:+$TRIM; }$busy"
