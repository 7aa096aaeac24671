#!/usr/bin/env bash
# 36-import-stream: big files travel to nudged in pieces, and the daemon stays
# responsive and keeps its socket.
#
# Proves, against a running daemon:
#   1. A 200,000-row customers file (many times the daemon's read queue)
#      imports completely while `nudgectl status` is polled: every answer
#      comes back within 2 s (a liveness bound, not a speed test).
#   2. Customers imported without a tz are counted in a warning naming the
#      configured zone, and warnings print before the summary.
#   3. The same size of file with one bad row at its very end imports
#      nothing and names FILE:LINE of that row.
#   4. A second nudged configured with the same admin socket refuses to
#      start, naming the socket, and the first keeps answering; a stale
#      socket left by a killed daemon is replaced at the next start.
#   5. No progress bar when standard output is not a terminal; one when it is.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 36-import-stream

N=200000
inst=$E2E_TMP/inst
make_instance "$inst" "$NUDGE_SRC/rules" Asia/Shanghai
start_daemon "$inst" 2027-01-01T00:00:00Z

# Every 10th customer has no tz: 20,000 of them.
"$PY" - "$E2E_TMP" "$N" <<'PY' || die "generating the CSV files failed"
import sys
d, n = sys.argv[1], int(sys.argv[2])
zones = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
with open(d + "/big.csv", "w") as f:
    f.write("id,name,email,birthday,tz,tags\n")
    for i in range(1, n + 1):
        tz = "" if i % 10 == 0 else zones[i % 4]
        f.write(f"C{i},Customer {i},c{i}@example.com,19{50 + i % 50}-0{1 + i % 9}-1{i % 10},{tz},vip;t{i % 7}\n")
with open(d + "/bad-last.csv", "w") as f:
    f.write("id,name,email,birthday,tz,tags\n")
    for i in range(1, n + 1):
        f.write(f"N{i},New {i},n{i}@example.com,1980-01-01,UTC,\n")
    f.write("N0,Late Row,late@example.com,2026-02-30,UTC,\n")
PY

# ---- 1. status answers during a big import -----------------------------------------
ctl "$inst" import customers "$E2E_TMP/big.csv" >"$E2E_TMP/import.out" 2>"$E2E_TMP/import.err" &
imp=$!
E2E_PIDS+=("$imp")
polls=0 slow=0 failed=0 worst=0
while kill -0 "$imp" 2>/dev/null; do
	t0=$(date +%s%N)
	if ! timeout 10 "$NUDGECTL" -s "$inst/nudge.sock" status >/dev/null 2>&1; then
		failed=$((failed + 1))
	fi
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$ms" -gt "$worst" ] && worst=$ms
	[ "$ms" -gt 2000 ] && slow=$((slow + 1))
	polls=$((polls + 1))
	sleep 0.2
done
wait "$imp"
rc=$?
check_rc "import of $N customers" 0 "$rc"
check_true "status was polled during the import ($polls polls)" [ "$polls" -ge 2 ]
check_eq "every status during the import answered (worst ${worst} ms)" 0 "$failed"
check_eq "no status answer took over 2 s (worst ${worst} ms)" 0 "$slow"
check_contains "the summary counts every row" "$(cat "$E2E_TMP/import.out")" "$N rows: $N inserted, 0 updated, 0 unchanged"
check_eq "every customer is stored" "$N" "$(sql "$inst" "SELECT count(*) FROM customers")"
check_eq "tags of the last row are stored" "t3;vip" \
	"$(sql "$inst" "SELECT group_concat(tag, ';') FROM (SELECT tag FROM customer_tags JOIN customers c ON c.id = customer_id WHERE c.ext_id = 'C$N' ORDER BY tag)")"
check_eq "the customer indexes are all there after the bulk load" 3 \
	"$(sql "$inst" "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'customers' AND sql IS NOT NULL")"

# ---- 2. the tz warning, before the summary -------------------------------------------
check_contains "customers without tz are counted" "$(cat "$E2E_TMP/import.err")" \
	"big.csv: warning: 20000 customers have no tz; they use Asia/Shanghai"
check_not_contains "no progress bar when stdout is not a terminal" "$(cat "$E2E_TMP/import.err")" "[#"
printf 'id,name,tz\nT1,One,\nT2,Two,UTC\n' >"$E2E_TMP/small.csv"
ctl "$inst" import customers "$E2E_TMP/small.csv" >"$E2E_TMP/both.txt" 2>&1
warn_line=$(grep -n "1 customer has no tz; it uses Asia/Shanghai" "$E2E_TMP/both.txt" | cut -d: -f1)
sum_line=$(grep -n "2 rows: 2 inserted" "$E2E_TMP/both.txt" | cut -d: -f1)
check_true "the warning (line ${warn_line:-none}) prints before the summary (line ${sum_line:-none})" \
	test -n "$warn_line" -a -n "$sum_line" -a "${warn_line:-0}" -lt "${sum_line:-0}"

# ---- 3. a bad row in the last piece imports nothing ----------------------------------------
run_cmd ctl "$inst" import customers "$E2E_TMP/bad-last.csv"
check_rc "a file with a bad last row fails" 1 "$RC"
check_contains "the bad row is named by its line" "$ERR" "bad-last.csv:$((N + 2)): birthday '2026-02-30'"
check_contains "nudgectl says nothing was imported" "$ERR" "nothing was imported"
check_eq "none of its rows is stored" 0 "$(sql "$inst" "SELECT count(*) FROM customers WHERE ext_id LIKE 'N%'")"

# ---- 4. the admin socket of a live daemon is not taken ----------------------------------------
other=$E2E_TMP/other
make_instance "$other" "$NUDGE_SRC/rules" UTC
sed -i "s|^admin_socket: .*|admin_socket: $inst/nudge.sock|" "$other/nudge.yaml"
run_cmd timeout 20 "$NUDGED" -c "$other/nudge.yaml" --now 2027-01-01T00:00:00Z --frozen
check_true "a second nudged on the same socket exits with an error (status $RC)" test "$RC" -ne 0 -a "$RC" -ne 124
check_contains "it names the socket in use" "$ERR" "admin socket $inst/nudge.sock is in use"
check_true "the first daemon still answers on its socket" daemon_alive "$inst"

kill9_daemon "$inst"
check_true "a killed daemon leaves its socket file behind" [ -S "$inst/nudge.sock" ]
start_daemon "$inst" 2027-01-01T00:00:00Z
check_true "the next start replaces the stale socket" daemon_alive "$inst"

# ---- 5. the progress bar on a terminal --------------------------------------------------
if command -v script >/dev/null; then
	script -qec "$NUDGECTL -s $inst/nudge.sock import customers $E2E_TMP/big.csv" /dev/null \
		>"$E2E_TMP/tty.txt" 2>&1
	check_contains "on a terminal the import draws a progress bar" "$(cat "$E2E_TMP/tty.txt")" "%  "
	check_contains "and ends with the summary" "$(cat "$E2E_TMP/tty.txt")" "$N rows: 0 inserted, 0 updated, $N unchanged"
fi

stop_daemon "$inst"
e2e_finish
