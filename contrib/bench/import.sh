#!/usr/bin/env bash
# import.sh: `nudgectl import` of contrib/gen-demo-data.py's customers and
# orders into a fresh nudged, against `sqlite3 .import` of the same CSV files
# plus the indexes nudge keeps on them, in the same run.
#
#   contrib/bench/import.sh [CUSTOMERS=1000000]
#
# IMPORT_DATA=DIR reuses customers.csv and orders.csv from DIR (generating a
# million customers takes minutes). For each file it prints nudged's wall
# and CPU time, nudged's peak RSS (VmHWM: start-up included) and the slowest
# answer to `nudgectl status` polled every 0.5 s during the import, then
# sqlite3's .import and CREATE INDEX times (wall and CPU) and the ratio of
# the two wall times (goal: at most 3).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${1:-1000000}
BENCH_CMD="${IMPORT_DATA:+IMPORT_DATA=... }contrib/bench/import.sh $N"
bench_init import

data=${IMPORT_DATA:-$BT}
if [ -z "${IMPORT_DATA:-}" ]; then
	echo "bench: generating $N customers" >&2
	"$PY" "$SRC/contrib/gen-demo-data.py" --customers "$N" --out "$BT" >/dev/null ||
		bench_die "gen-demo-data.py failed"
fi
[ -f "$data/customers.csv" ] && [ -f "$data/orders.csv" ] || bench_die "no CSV files in $data"
ncust=$(($(wc -l <"$data/customers.csv") - 1))
nord=$(($(wc -l <"$data/orders.csv") - 1))

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

hwm_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$NUDGED_PID/status"; }

# Polls status during an import; writes the slowest answer (s) to $1.
poll_status() {
	local out=$1 worst=0 t0 t1 d
	while :; do
		t0=$(now_s)
		ctl "$inst" status >/dev/null 2>&1 || { echo "failed" >"$out"; return; }
		t1=$(now_s)
		d=$(fsub "$t1" "$t0")
		worst=$(awk -v a="$worst" -v b="$d" 'BEGIN { print (b > a) ? b : a }')
		echo "$worst" >"$out"
		sleep 0.5
	done
}

# nudged_import KIND: sets W (wall s), C (CPU s), HWM (MB), SLOW (s).
nudged_import() {
	local kind=$1 c0 t0 t1 pp
	c0=$(cpu_s "$NUDGED_PID")
	poll_status "$BT/status-$kind" &
	pp=$!
	BENCH_PIDS+=("$pp")
	t0=$(now_s)
	ctl "$inst" import "$kind" "$data/$kind.csv" >"$BT/import-$kind.out" 2>&1 ||
		bench_die "import $kind failed: $(tail -5 "$BT/import-$kind.out")"
	t1=$(now_s)
	kill "$pp" 2>/dev/null
	wait "$pp" 2>/dev/null
	W=$(fsub "$t1" "$t0")
	C=$(fsub "$(cpu_s "$NUDGED_PID")" "$c0")
	HWM=$(hwm_mb)
	SLOW=$(cat "$BT/status-$kind" 2>/dev/null || echo "?")
}

machine_mark
nudged_import customers
CW=$W CC=$C CHWM=$HWM CSLOW=$SLOW
nudged_import orders
OW=$W OC=$C OHWM=$HWM OSLOW=$SLOW
echo "nudged: customers ${CW}s (CPU ${CC}s, VmHWM ${CHWM} MB, slowest status ${CSLOW}s); orders ${OW}s (CPU ${OC}s, VmHWM ${OHWM} MB, slowest status ${OSLOW}s)"
[ "$(sqlite3 "$inst/nudge.db" 'SELECT count(*) FROM customers')" = "$ncust" ] ||
	echo "bench: warning: customer count differs from the file" >&2
stop_nudged "$inst"

# sqlite3: the same files into plain tables, then the indexes nudge keeps
# on them (customers: the unique id, birthday month-day, birthday, tz;
# orders: the unique id, customer + time). Wall and CPU via /usr/bin/time.
sq=$BT/sqlite.db
tm() { /usr/bin/time -f '%e %U %S' -o "$BT/tm" sqlite3 "$sq" "$@" >/dev/null || bench_die "sqlite3 $*"; awk '{ printf "%s %.2f", $1, $2 + $3 }' "$BT/tm"; }
read -r SCW SCC < <(tm ".mode csv" ".import $data/customers.csv customers")
read -r SCIW SCIC < <(tm "CREATE UNIQUE INDEX c_id ON customers(id);
CREATE INDEX c_bd5 ON customers(substr(birthday, -5));
CREATE INDEX c_tz ON customers(tz);
CREATE INDEX c_bd ON customers(birthday);")
read -r SOW SOC < <(tm ".mode csv" ".import $data/orders.csv orders")
read -r SOIW SOIC < <(tm "CREATE UNIQUE INDEX o_id ON orders(order_id);
CREATE INDEX o_cust ON orders(customer_id, ordered_at);")
SCT=$(awk -v a="$SCW" -v b="$SCIW" 'BEGIN { printf "%.2f", a + b }')
SOT=$(awk -v a="$SOW" -v b="$SOIW" 'BEGIN { printf "%.2f", a + b }')
echo "sqlite3: customers .import ${SCW}s (CPU ${SCC}s) + indexes ${SCIW}s (CPU ${SCIC}s); orders .import ${SOW}s (CPU ${SOC}s) + indexes ${SOIW}s (CPU ${SOIC}s)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
result "import" "$ncust customers ($(du -m "$data/customers.csv" | cut -f1) MB): nudged **${CW}s** (CPU ${CC}s) vs sqlite3 .import + 4 indexes **${SCT}s** (CPU $(awk -v a="$SCC" -v b="$SCIC" 'BEGIN { printf "%.2f", a + b }')s): **$(ratio "$CW" "$SCT")x**; $nord orders ($(du -m "$data/orders.csv" | cut -f1) MB): nudged **${OW}s** (CPU ${OC}s) vs sqlite3 .import + 2 indexes **${SOT}s** (CPU $(awk -v a="$SOC" -v b="$SOIC" 'BEGIN { printf "%.2f", a + b }')s): **$(ratio "$OW" "$SOT")x**; nudged peak RSS (VmHWM) **${OHWM} MB**; slowest status answer during the imports ${CSLOW}s / ${OSLOW}s; $(machine_busy 2>/dev/null || true)"
