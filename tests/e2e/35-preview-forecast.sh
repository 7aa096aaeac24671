#!/usr/bin/env bash
# 35-preview-forecast: preview and forecast tell the truth about what an
# advance then does, and send nothing themselves.
#
# With 1,000 demo customers (contrib/gen-demo-data.py) and the shipped rules,
# the clock frozen at T = 2027-01-01T00:00Z (default zone Asia/Shanghai):
#   1. `nudgectl preview birthday-greeting --at T` lists recipients, each with
#      a rendered subject and text (the customer's own first name and a
#      BDAY- coupon, no Mustache tags left); --json gives the same with the
#      count and first fire; a preview sends and enqueues nothing.
#   2. `nudgectl forecast --from T --to T+31d --rule birthday-greeting --json`
#      lists rows (count = number of rows, not truncated), in time order;
#      every row's local time is 09:00 in its zone (checked from its UTC time
#      and zone with Python's zoneinfo, not only from the printed local time)
#      on the customer's birthday.
#   3. `nudgectl advance --to T+31d` then enqueues exactly the forecast rows
#      for that rule: the same count and the same (customer, occurrence, due
#      time) triples (counted with sqlite3 on the database).
#   4. The same holds per rule for a forecast of every rule over the window,
#      row for row, the `entered` win-back rule included.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 35-preview-forecast

T=2027-01-01T00:00:00Z
T31=2027-02-01T00:00:00Z
inst=$E2E_TMP/inst
make_instance "$inst" "$NUDGE_SRC/rules" Asia/Shanghai
gen_demo "$inst" 1000
start_daemon "$inst" "$T"
run_cmd ctl "$inst" import customers "$inst/customers.csv"
check_rc "import 1,000 demo customers" 0 "$RC"
run_cmd ctl "$inst" import orders "$inst/orders.csv"
check_rc "import their orders" 0 "$RC"

# ---- 1. preview ---------------------------------------------------------------------
run_cmd ctl "$inst" preview birthday-greeting --at "$T"
check_rc "nudgectl preview birthday-greeting --at T" 0 "$RC"
check_match "preview (RULE before --at) lists recipients with a subject" "$OUT" '^Subject: .+'
# The same with the option first, which any getopt accepts.
run_cmd ctl "$inst" preview --at "$T" --limit 20 birthday-greeting
check_rc "nudgectl preview --at T --limit 20 birthday-greeting" 0 "$RC"
human=$OUT
check_match "preview says how many deliveries the next fire makes" "$human" \
	'^rule birthday-greeting: [1-9][0-9]* deliver(y|ies) at the next fire from 2027-'
check_match "preview lists a recipient by id, channel and address" "$human" \
	'^--- C[0-9]+ via email to [^ ]+@example\.(com|net|org) at 2027-'
check_match "preview shows a rendered subject" "$human" '^Subject: Happy birthday, .+'
check_match "preview shows the rendered text with a coupon" "$human" 'BDAY-[A-Z0-9]+'
check_not_contains "preview leaves no Mustache tag unrendered" "$human" "{{"

run_cmd ctl_json "$inst" preview --at "$T" --limit 20 birthday-greeting
check_rc "preview --json" 0 "$RC"
pj=$OUT
n=$(jq '.recipients | length' <<<"$pj")
count=$(jq '.count' <<<"$pj")
check_true "preview --json lists recipients ($n of $count)" test "$n" -gt 0
check_true "preview --json count covers the listed recipients" test "$count" -ge "$n"
check_eq "every previewed recipient has a subject and a text" "$n" \
	"$(jq '[.recipients[] | select((.subject // "") != "" and (.text // "") != "")] | length' <<<"$pj")"
# Each subject greets that customer by the first name in the store.
bad_names=0
while IFS=$'\t' read -r cust subject; do
	first=$(sql "$inst" "SELECT first_name FROM customers WHERE ext_id = '$cust'")
	case $subject in
	*"$first"*) ;;
	*)
		bad_names=$((bad_names + 1))
		echo "  $cust: first name '$first' not in subject '$subject'" >&2
		;;
	esac
done < <(jq -r '.recipients[] | [.customer, .subject] | @tsv' <<<"$pj")
check_eq "each previewed subject carries that customer's first name" 0 "$bad_names"
first_fire=$(jq -r '.first_fire' <<<"$pj")
check_match "preview --json gives the first fire after T" "$first_fire" '^2027-01-'
check_eq "the previewed recipients are due at the first fire's day, 09:00 local" "$n" \
	"$(jq '[.recipients[] | select(.local | test("T09:00:00"))] | length' <<<"$pj")"
check_eq "preview enqueued nothing" 0 "$(sql "$inst" "SELECT count(*) FROM deliveries")"
check_eq "preview wrote nothing to the spool" 0 "$(find "$inst/spool" -type f 2>/dev/null | wc -l)"
run_cmd ctl "$inst" preview --at "$T" no-such-rule
check_rc "preview of an unknown rule fails" 1 "$RC"

# ---- 2. forecast ----------------------------------------------------------------------
run_cmd ctl_json "$inst" forecast --from "$T" --to "$T31" --rule birthday-greeting
check_rc "forecast --rule birthday-greeting --json" 0 "$RC"
fc=$OUT
printf '%s\n' "$fc" >"$E2E_TMP/forecast-birthday.json"
fcount=$(jq '.count' <<<"$fc")
check_eq "forecast count equals its number of rows" "$fcount" "$(jq '.rows | length' <<<"$fc")"
check_eq "forecast is not truncated" false "$(jq '.truncated' <<<"$fc")"
check_true "forecast lists birthdays in January ($fcount)" test "$fcount" -gt 20
check_eq "forecast lists only birthday-greeting" '["birthday-greeting"]' "$(jq -c '[.rows[].rule] | unique' <<<"$fc")"
check_eq "forecast rows are in time order" true "$(jq '[.rows[].at] == ([.rows[].at] | sort)' <<<"$fc")"
check_eq "preview's first fire is the forecast's first row" "$first_fire" "$(jq -r '.rows[0].at' <<<"$fc")"

# Every row: 09:00 local in its zone on the customer's birthday, inside the window.
sqlite3 -batch -noheader -separator $'\t' "file:$inst/nudge.db?mode=ro" \
	"SELECT ext_id, coalesce(birthday, '') FROM customers" >"$E2E_TMP/birthdays.tsv"
admin_results < <("$PY" - "$E2E_TMP/forecast-birthday.json" "$E2E_TMP/birthdays.tsv" "$T" "$T31" <<'PY'
import datetime as dt, json, sys
from zoneinfo import ZoneInfo
rows = json.load(open(sys.argv[1]))["rows"]
bday = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[2], encoding="utf-8"))
lo = dt.datetime.fromisoformat(sys.argv[3].replace("Z", "+00:00"))
hi = dt.datetime.fromisoformat(sys.argv[4].replace("Z", "+00:00"))
bad_local, bad_printed, bad_day, outside = [], [], [], []
for r in rows:
    at = dt.datetime.fromisoformat(r["at"].replace("Z", "+00:00"))
    local = at.astimezone(ZoneInfo(r["tz"]))
    if (local.hour, local.minute, local.second) != (9, 0, 0):
        bad_local.append((r["customer"], r["tz"], r["at"], local.isoformat()))
    printed = dt.datetime.fromisoformat(r["local"])
    if printed != at or printed.utcoffset() != local.utcoffset() or printed.hour != 9:
        bad_printed.append((r["customer"], r["local"], local.isoformat()))
    b = bday.get(r["customer"], "")
    if b[-5:] != "%02d-%02d" % (local.month, local.day):
        bad_day.append((r["customer"], b, local.date().isoformat()))
    if not (lo <= at <= hi):
        outside.append(r["at"])
def v(ok, what, detail):
    print(("PASS " if ok else "FAIL ") + what + ("" if ok else ": %d, e.g. %s" % (len(detail), detail[:3])))
v(not bad_local, "every forecast row is at 09:00 local time in its zone (zoneinfo)", bad_local)
v(not bad_printed, "every forecast row's printed local time is that same instant, 09:00", bad_printed)
v(not bad_day, "every forecast row falls on the customer's birthday (local date)", bad_day)
v(not outside, "every forecast row is inside the window", outside)
zones = sorted({r["tz"] for r in rows})
v(len(zones) >= 3, "the forecast spans several zones (%s)" % ", ".join(zones), zones)
PY
)

# ---- 3. advance enqueues exactly that ---------------------------------------------------
# advance --to T31 from a clock at T fires what is due in (T, T31]; the
# forecast window is half-open, [from, to), so the same instants are
# [T + 1 s, T31 + 1 s).
run_cmd ctl_json "$inst" forecast --from 2027-01-01T00:00:01Z --to 2027-02-01T00:00:01Z
check_rc "forecast of every rule --json" 0 "$RC"
all=$OUT
check_eq "forecast of every rule is not truncated" false "$(jq '.truncated' <<<"$all")"
# Preview of the `entered` win-back rule: its first fire and count are the
# forecast's (the rows of its first day with anyone entering).
run_cmd ctl_json "$inst" preview --at "$T" --limit 3 winback-coupon
check_rc "preview winback-coupon --json" 0 "$RC"
wb_first=$(jq -r '[.rows[] | select(.rule == "winback-coupon") | .at] | min' <<<"$all")
check_eq "preview's first win-back fire is the forecast's first win-back row" "$wb_first" \
	"$(jq -r '.first_fire' <<<"$OUT")"
check_eq "preview's win-back count is the forecast's rows from that fire to 24 h later (inclusive)" \
	"$(jq --arg f "$wb_first" '[.rows[] | select(.rule == "winback-coupon" and .at >= $f) | .at | fromdateiso8601] as $t | ($f | fromdateiso8601) as $s | [$t[] | select(. <= $s + 86400)] | length' <<<"$all")" \
	"$(jq '.count' <<<"$OUT")"
run_cmd ctl "$inst" advance --to "$T31"
check_rc "advance --to T+31d" 0 "$RC"
enq=$(sql "$inst" "SELECT count(*) FROM deliveries WHERE rule = 'birthday-greeting'")
check_eq "advance enqueued as many birthday-greeting deliveries as forecast" "$fcount" "$enq"
jq -r '.rows[] | [.customer, .occurrence, .at] | @tsv' <<<"$fc" | sort >"$E2E_TMP/fc.tsv"
sqlite3 -batch -noheader -separator $'\t' "file:$inst/nudge.db?mode=ro" \
	"SELECT c.ext_id, d.occurrence, strftime('%Y-%m-%dT%H:%M:%SZ', d.due_at, 'unixepoch')
	 FROM deliveries d JOIN customers c ON c.id = d.customer_id
	 WHERE d.rule = 'birthday-greeting'" | sort >"$E2E_TMP/enq.tsv"
if cmp -s "$E2E_TMP/fc.tsv" "$E2E_TMP/enq.tsv"; then
	pass "the forecast rows and the enqueued deliveries are the same (customer, occurrence, time)"
else
	fail "the forecast rows and the enqueued deliveries are the same (customer, occurrence, time)" "(diff forecast enqueued:)"
	diff "$E2E_TMP/fc.tsv" "$E2E_TMP/enq.tsv" | head -10 | sed 's/^/    | /' >&2
fi
check_eq "the birthday deliveries were all sent or deliberately not (none left pending)" 0 \
	"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE rule = 'birthday-greeting' AND state IN ('pending', 'sending', 'retry')")"

# ---- 4. per rule, for the forecast of every rule ------------------------------------------
for rule in $(jq -r '[.rows[].rule] | unique | .[]' <<<"$all") $(sql "$inst" "SELECT DISTINCT rule FROM deliveries"); do
	echo "$rule"
done | sort -u >"$E2E_TMP/rules.txt"
while read -r rule; do
	f=$(jq --arg r "$rule" '[.rows[] | select(.rule == $r)] | length' <<<"$all")
	e=$(sql "$inst" "SELECT count(*) FROM deliveries WHERE rule = '$rule'")
	check_eq "forecast of every rule: $rule forecast = enqueued" "$f" "$e"
done <"$E2E_TMP/rules.txt"
check_true "the window has win-back (entered) rows to compare" \
	test "$(jq '[.rows[] | select(.rule == "winback-coupon")] | length' <<<"$all")" -gt 10
# Row for row, including the `entered` win-back rule, whose forecast derives
# each customer's entry day while advance checks the condition day by day.
jq -r '.rows[] | [.rule, .customer, .occurrence, .channel, .at] | @tsv' <<<"$all" |
	sort >"$E2E_TMP/fc-all.tsv"
sqlite3 -batch -noheader -separator $'\t' "file:$inst/nudge.db?mode=ro" \
	"SELECT d.rule, c.ext_id, d.occurrence, d.channel,
	        strftime('%Y-%m-%dT%H:%M:%SZ', d.due_at, 'unixepoch')
	 FROM deliveries d JOIN customers c ON c.id = d.customer_id" | sort >"$E2E_TMP/enq-all.tsv"
if cmp -s "$E2E_TMP/fc-all.tsv" "$E2E_TMP/enq-all.tsv"; then
	pass "forecast of every rule and the enqueued deliveries are the same (rule, customer, occurrence, channel, time)"
else
	fail "forecast of every rule and the enqueued deliveries are the same (rule, customer, occurrence, channel, time)" "(diff forecast enqueued:)"
	diff "$E2E_TMP/fc-all.tsv" "$E2E_TMP/enq-all.tsv" | head -10 | sed 's/^/    | /' >&2
fi

check_true "the daemon is alive" daemon_alive "$inst"
stop_daemon "$inst"
check_eq "the daemon stops with status 0" 0 "$EXIT_STATUS"
check_log_clean "$inst"

e2e_finish
