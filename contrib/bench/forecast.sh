#!/usr/bin/env bash
# forecast.sh: how long `nudgectl forecast` takes for a year over many customers.
#
#   contrib/bench/forecast.sh [CUSTOMERS]   (default 100000)
#   FORECAST_TIMEOUT=45   seconds one full listing may take before it is
#                         stopped and reported as "> N s" (default 45)
#   PERF=1                profile nudged during the full listing of all rules
#
# contrib/gen-demo-data.py --customers N (and its orders) is imported into
# nudged running the shipped rules/ on a frozen clock at 2026-12-31T12:00Z
# (as contrib/demo.sh does); then, for the window 2027-01-01 .. 2028-01-01,
# for each shipped rule and for all rules together:
#   eval   `nudgectl --json forecast --limit 1000`: the daemon evaluates the
#          whole year and counts every row, but lists (sorts, sends) only
#          the first 1,000: the cost of the evaluation itself;
#   full   `nudgectl --json forecast` with the default limit (1,000,000
#          rows): what a user gets, every row listed in time order.
# A full listing that exceeds FORECAST_TIMEOUT is stopped (nudgectl is
# killed, and nudged restarted, since its worker would go on) and reported
# as "> FORECAST_TIMEOUT s". To show how the listing time grows with the
# number of rows, birthday-greeting is also listed over 1, 2 and 4 months.
# For reference, sqlite3 runs comparable full-table queries on the same
# database (`sqlite3 -json`, to a file): the birthday audience with each
# customer's 2027 fire date, sorted by date; and birthday + monthly callback
# (12 months of high-value customers) + christmas, sorted by date.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${1:-100000}
FORECAST_TIMEOUT=${FORECAST_TIMEOUT:-45}
BENCH_CMD="contrib/bench/forecast.sh $N"
bench_init forecast
FROM=2027-01-01T00:00:00Z
TO=2028-01-01T00:00:00Z

"$PY" "$SRC/contrib/gen-demo-data.py" --customers "$N" --out "$BT" >/dev/null ||
	bench_die "gen-demo-data.py failed"
inst=$BT/nudged
mkdir -p "$inst"
cat >"$inst/nudge.yaml" <<YAML
database: nudge.db
rules: $SRC/rules
calendars: $SRC/calendars
timezone: Asia/Shanghai
admin_socket: nudge.sock
spool_dir: spool
channels:
  email: { transport: spool, from: "Shop <shop@example.com>" }
  sms: { transport: spool }
  webhook: { transport: spool }
  task: { transport: task, staff: [alice, bob] }
YAML
start_nudged "$inst" 2026-12-31T12:00:00Z
t0=$(now_s)
ctl "$inst" import customers "$BT/customers.csv" >/dev/null || bench_die "import customers failed"
t1=$(now_s)
ctl "$inst" import orders "$BT/orders.csv" >/dev/null || bench_die "import orders failed"
t2=$(now_s)
norders=$(($(wc -l <"$BT/orders.csv") - 1))
echo "import: $N customers in $(fsub "$t1" "$t0")s, $norders orders in $(fsub "$t2" "$t1")s"
mapfile -t RULES < <(ctl "$inst" --json rules | "$PY" -c 'import json, sys; [print(r["name"]) for r in json.load(sys.stdin)["rules"]]')
[ "${#RULES[@]}" -gt 0 ] || bench_die "no rules loaded"

# fc LABEL TIMEOUT ARGS...: one forecast; sets FC_TIME ("12.3" or "> 45"), FC_ROWS.
fc() {
	local label=$1 limit=$2 t s e rc
	shift 2
	s=$(now_s)
	timeout "$limit" "$NUDGECTL" -s "$inst/nudge.sock" --json forecast --from "$FROM" "$@" \
		>"$BT/fc.json" 2>"$BT/fc.err"
	rc=$?
	e=$(now_s)
	t=$(fsub "$e" "$s")
	if [ $rc = 124 ]; then
		FC_TIME="> $limit"
		FC_ROWS="?"
		# The daemon's worker goes on with the listing: start it again.
		stop_nudged "$inst"
		start_nudged "$inst" 2026-12-31T12:00:00Z
	elif [ $rc != 0 ]; then
		bench_die "forecast $label failed ($rc): $(cat "$BT/fc.err")"
	else
		FC_TIME=$t
		FC_ROWS=$(head -c 300 "$BT/fc.json" | grep -o '"count": *[0-9]*' | grep -o '[0-9]*$')
	fi
	printf '  %-44s %10s s  %8s rows  %s\n' "$label" "$FC_TIME" "$FC_ROWS" "$(wc -c <"$BT/fc.json") bytes"
}

declare -A EVAL FULL ROWS
echo "forecast $FROM .. $TO over $N customers:"
for r in "${RULES[@]}" all; do
	args=(--to "$TO")
	[ "$r" = all ] || args+=(--rule "$r")
	fc "$r (eval, --limit 1000)" 600 "${args[@]}" --limit 1000
	EVAL[$r]=$FC_TIME
	ROWS[$r]=$FC_ROWS
	[ "$r" = all ] && perf_start
	fc "$r (full listing)" "$FORECAST_TIMEOUT" "${args[@]}"
	[ "$r" = all ] && perf_stop
	FULL[$r]=$FC_TIME
done
echo "listing time against rows (birthday-greeting):"
declare -A SCALE
for m in 1 2 4; do
	to=$(date -u -d "2027-01-01 +$m months" +%Y-%m-%dT00:00:00Z)
	fc "birthday-greeting, $m month(s)" "$FORECAST_TIMEOUT" --to "$to" --rule birthday-greeting
	SCALE[$m]="$FC_ROWS rows ${FC_TIME}s"
done
stop_nudged "$inst"

# ---- sqlite3: comparable full-table queries on the same data -------------
db=$inst/nudge.db
q_birthday="SELECT '2027-' || substr(c.birthday, -5) || 'T09:00' AS at, c.ext_id AS customer, c.tz, 'birthday-greeting' AS rule, 'email' AS channel
  FROM customers c LEFT JOIN customer_stats s ON s.customer_id = c.id
  WHERE c.birthday IS NOT NULL AND c.email IS NOT NULL
    AND EXISTS (SELECT 1 FROM consents k WHERE k.customer_id = c.id AND k.channel = 'email' AND k.granted = 1)"
q_monthly="SELECT printf('2027-%02d-01T09:30', m.value) AS at, c.ext_id, c.tz, 'monthly-callback', 'task'
  FROM customers c, generate_series(1, 12) m WHERE c.tier = 'high-value'"
q_xmas="SELECT '2027-12-18T10:00' AS at, c.ext_id, c.tz, 'christmas-offer', 'email' FROM customers c
  WHERE c.email IS NOT NULL AND (c.tz IS NULL OR c.tz NOT IN ('Asia/Shanghai', 'Asia/Hong_Kong', 'Asia/Taipei'))
    AND EXISTS (SELECT 1 FROM consents k WHERE k.customer_id = c.id AND k.channel = 'email' AND k.granted = 1)"
sq() { # LABEL SQL
	local s e n
	s=$(now_s)
	sqlite3 -json "$db" "$2" >"$BT/sq.json" || bench_die "sqlite3 failed on: $2"
	e=$(now_s)
	n=$(grep -c '"at"' "$BT/sq.json")
	SQ_TIME=$(fsub "$e" "$s")
	printf '  %-44s %10s s  %8s rows  %s\n' "$1" "$SQ_TIME" "$n" "$(wc -c <"$BT/sq.json") bytes"
	SQ_ROWS=$n
}
echo "sqlite3 reference (full table, sorted, JSON to a file):"
if ! sqlite3 "$db" "SELECT value FROM generate_series(1, 1)" >/dev/null 2>&1; then
	# Older sqlite3 shells have no generate_series: a 12-row CTE instead.
	q_monthly="WITH m(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM m WHERE value < 12) ${q_monthly/, generate_series(1, 12) m/, m}"
fi
sq "birthday-like (1 rule)" "$q_birthday ORDER BY at, c.ext_id"
SQ1="$SQ_ROWS rows ${SQ_TIME}s"
sq "birthday+monthly+christmas" "SELECT * FROM ($q_birthday UNION ALL $q_monthly UNION ALL $q_xmas) ORDER BY at, customer"
SQ3="$SQ_ROWS rows ${SQ_TIME}s"

summary=""
for r in "${RULES[@]}" all; do
	summary+="$r ${ROWS[$r]} rows: eval ${EVAL[$r]}s, full ${FULL[$r]}s; "
done
result "forecast" "$N customers, 2027: ${summary}birthday full listing by window 1/2/4 months: ${SCALE[1]} / ${SCALE[2]} / ${SCALE[4]}; sqlite3 reference: birthday-like $SQ1, 3 rules $SQ3"
