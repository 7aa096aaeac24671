#!/usr/bin/env bash
# 33-catch-up: fires missed while nudged was down are caught up within
# catch_up (default 24h) and older ones are logged and skipped; a kill -9
# loses nothing and duplicates nothing.
#
# Proves, with a daily rule at 09:00 UTC over a handful of UTC customers:
#   1. Started frozen at T0 = 2027-03-01T08:00Z and stopped before 09:00,
#      then restarted frozen at T0+20h (19h after the missed fire): the
#      2027-03-01 fire is enqueued and sent on start (checked after
#      `advance --to` the same time, which settles), with its own due time.
#   2. Restarted three days later (2027-03-05T04:00Z): the 03-02 and 03-03
#      fires, older than 24h, are skipped and logged ("older than catch_up",
#      counted in status as skipped_late); only the 03-04 fire is sent.
#   3. catch_up is configurable: with `catch_up: 2h` a fire 3h old is skipped
#      and one 1h old is sent.
#   4. kill -9 in the middle of an advance that dispatches thousands of
#      spool deliveries (3,000 demo customers), then a restart: every row
#      that existed before the restart, and every one of the three days'
#      deliveries, ends up sent; no (rule, customer, occurrence, action) has
#      two rows and no delivery id has two spool files.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 33-catch-up

rules=$E2E_TMP/rules
mkdir -p "$rules"
cat >"$rules/daily.yaml" <<'YAML'
name: daily-digest
description: A daily message at 09:00 local time (customers here live in UTC).
category: care
trigger: { daily: { at: "09:00" } }
audience: phone is not null
actions:
  - sms: { text: "Good morning {{first_name}}: digest {{occurrence}}." }
YAML
cat >"$E2E_TMP/customers.csv" <<'CSV'
id,name,first_name,email,phone,tz,tier
U1,Una One,Una,una@example.com,+442079460001,UTC,normal
U2,Udo Two,Udo,udo@example.com,+442079460002,UTC,normal
U3,Uma Three,Uma,uma@example.com,+442079460003,UTC,high-value
U4,Uli Four,Uli,uli@example.com,+442079460004,,potential
CSV
ncust=4

inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC

# per_occurrence OCC [STATE]: deliveries of daily-digest for occurrence OCC.
per_occurrence() {
	if [ -n "${2:-}" ]; then
		sql "$inst" "SELECT count(*) FROM deliveries WHERE rule = 'daily-digest' AND occurrence = '$1' AND state = '$2'"
	else
		sql "$inst" "SELECT count(*) FROM deliveries WHERE rule = 'daily-digest' AND occurrence = '$1'"
	fi
}
epoch() { date -u -d "$1" +%s; }

# ---- T0: start, import, stop before the first fire ---------------------------------
start_daemon "$inst" 2027-03-01T08:00:00Z
run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
check_rc "import $ncust customers" 0 "$RC"
check_eq "the rule's next fire is 2027-03-01 09:00 UTC" "2027-03-01T09:00:00Z" \
	"$(ctl_json "$inst" rules | jq -r '.rules[] | select(.name == "daily-digest") | .next_fire')"
stop_daemon "$inst"
check_eq "stopped at T0 with status 0" 0 "$EXIT_STATUS"
check_eq "nothing was enqueued before the fire" 0 "$(sql "$inst" "SELECT count(*) FROM deliveries")"

# ---- 1. restart 20h later: the missed fire is caught up -------------------------------
start_daemon "$inst" 2027-03-02T04:00:00Z
run_cmd ctl "$inst" advance --to 2027-03-02T04:00:00Z
check_rc "advance to the start time settles the catch-up" 0 "$RC"
check_eq "the missed 2027-03-01 fire is enqueued for every customer" "$ncust" "$(per_occurrence 2027-03-01)"
check_eq "the missed fire is sent" "$ncust" "$(per_occurrence 2027-03-01 sent)"
check_eq "the caught-up deliveries keep their own due time (09:00 on the 1st)" \
	"$(epoch 2027-03-01T09:00:00Z)" \
	"$(sql "$inst" "SELECT DISTINCT due_at FROM deliveries WHERE occurrence = '2027-03-01'")"
check_eq "the caught-up messages are in the spool" "$ncust" \
	"$(grep -l '"occurrence": "2027-03-01"' "$inst"/spool/sms/*.json 2>/dev/null | wc -l)"
out=$(spool_check "$inst" sms)
check_rc "one spool file per caught-up delivery ($out)" 0 $?
check_eq "nothing was skipped as late" 0 "$(ctl_json "$inst" status | jq -r .skipped_late)"
check_not_contains "nothing is logged as older than catch_up" "$(cat "$inst/nudged.log")" "older than catch_up"
check_eq "no other occurrence was enqueued" "$ncust" "$(sql "$inst" "SELECT count(*) FROM deliveries")"
stop_daemon "$inst"
check_eq "stopped after the catch-up with status 0" 0 "$EXIT_STATUS"

# ---- 2. restart three days later: older fires skipped ------------------------------
start_daemon "$inst" 2027-03-05T04:00:00Z
run_cmd ctl "$inst" advance --to 2027-03-05T04:00:00Z
check_rc "advance to the start time after three days down" 0 "$RC"
check_eq "the 2027-03-02 fire (67h old) is not sent" 0 "$(per_occurrence 2027-03-02)"
check_eq "the 2027-03-03 fire (43h old) is not sent" 0 "$(per_occurrence 2027-03-03)"
check_eq "the 2027-03-04 fire (19h old) is enqueued" "$ncust" "$(per_occurrence 2027-03-04)"
check_eq "the 2027-03-04 fire is sent" "$ncust" "$(per_occurrence 2027-03-04 sent)"
log=$(cat "$inst/nudged.log")
check_contains "the skipped fires are logged as older than catch_up" "$log" "older than catch_up"
check_match "the log names the rule and counts two skipped fires" "$log" \
	"daily-digest: 2 fire\(s\) between .* older than catch_up"
check_eq "status counts the two late fires as skipped" 2 "$(ctl_json "$inst" status | jq -r .skipped_late)"
check_eq "in all, two days were delivered" $((2 * ncust)) "$(sql "$inst" "SELECT count(*) FROM deliveries WHERE state = 'sent'")"
# The next fire after the restart is an ordinary one.
run_cmd ctl "$inst" advance --to 2027-03-05T10:00:00Z
check_rc "advance past the next fire" 0 "$RC"
check_eq "the next regular fire (2027-03-05) is sent" "$ncust" "$(per_occurrence 2027-03-05 sent)"
stop_daemon "$inst"
check_eq "stopped with status 0" 0 "$EXIT_STATUS"

# ---- 3. a configured catch_up ------------------------------------------------------
make_instance "$inst" "$rules" UTC "catch_up: 2h"
start_daemon "$inst" 2027-03-06T12:00:00Z
run_cmd ctl "$inst" advance --to 2027-03-06T12:00:00Z
check_rc "advance after a restart with catch_up: 2h" 0 "$RC"
check_eq "with catch_up: 2h a fire 3h old is skipped" 0 "$(per_occurrence 2027-03-06)"
check_match "the skipped fire is logged" "$(cat "$inst/nudged.log")" \
	"daily-digest: 1 fire\(s\) between .* older than catch_up"
stop_daemon "$inst"
start_daemon "$inst" 2027-03-07T10:00:00Z
run_cmd ctl "$inst" advance --to 2027-03-07T10:00:00Z
check_eq "with catch_up: 2h a fire 1h old is sent" "$ncust" "$(per_occurrence 2027-03-07 sent)"
stop_daemon "$inst"
check_eq "stopped with status 0" 0 "$EXIT_STATUS"
check_log_clean "$inst"

# ---- 4. kill -9 during an advance ---------------------------------------------------
big=$E2E_TMP/big
mkdir -p "$big/rules"
cat >"$big/rules/daily.yaml" <<'YAML'
name: daily-ping
category: care
trigger: { daily: { at: "09:00" } }
audience: phone is not null
actions:
  - webhook: { url: "http://127.0.0.1:9/hook" }
  - sms: { text: "Hello {{first_name}}, delivery {{delivery_id}}." }
YAML
# A long catch_up so that the restart picks up every fire the kill prevented.
make_instance "$big" "$big/rules" UTC "catch_up: 7d"
gen_demo "$big" 3000
start_daemon "$big" 2027-03-01T00:00:00Z
run_cmd ctl "$big" import customers "$big/customers.csv"
check_rc "import 3,000 demo customers" 0 "$RC"
phones=$(sql "$big" "SELECT count(*) FROM customers WHERE phone IS NOT NULL AND phone <> ''")
expected=$((phones * 3 * 2))

ctl "$big" advance --to 2027-03-04T00:00:00Z >"$big/advance.out" 2>&1 &
adv=$!
mid=0
for _ in $(seq 1 300); do
	sent=$(sql "$big" "SELECT count(*) FROM deliveries WHERE state = 'sent'" 2>/dev/null || echo 0)
	if [ "${sent:-0}" -gt 500 ]; then
		mid=1
		break
	fi
	sleep 0.1
done
[ $mid = 1 ] || die "no delivery was sent within 30 s of the advance"
kill9_daemon "$big"
wait_exit "$adv" 10 || kill "$adv" 2>/dev/null
states=$(sql "$big" "SELECT state || '=' || count(*) FROM deliveries GROUP BY state ORDER BY state" | tr '\n' ' ')
echo "note: after kill -9: $states(of $expected in the end)"
before=$(sql "$big" "SELECT count(*) FROM deliveries")
unsent=$(sql "$big" "SELECT count(*) FROM deliveries WHERE state <> 'sent'")
if [ "$unsent" -gt 0 ] || [ "$before" -lt "$expected" ]; then
	pass "kill -9 came in the middle of the work ($unsent unsent, $before of $expected enqueued)"
else
	fail "kill -9 came in the middle of the work" "(everything was done already)"
fi
sql "$big" "SELECT id FROM deliveries" | sort >"$big/ids-before"

# Restart where the advance was going, then move past the lease (300 s) so
# rows claimed by the dead process are taken again.
start_daemon "$big" 2027-03-04T00:00:00Z
run_cmd ctl "$big" advance --to 2027-03-04T00:10:00Z
check_rc "advance after the restart" 0 "$RC"
sql "$big" "SELECT id FROM deliveries WHERE state = 'sent'" | sort >"$big/ids-sent"
lost=$(comm -23 "$big/ids-before" "$big/ids-sent" | wc -l)
check_eq "every delivery enqueued before kill -9 is sent after the restart" 0 "$lost"
check_eq "all three days' deliveries exist after the restart" "$expected" \
	"$(sql "$big" "SELECT count(*) FROM deliveries")"
check_eq "all three days' deliveries are sent" "$expected" \
	"$(sql "$big" "SELECT count(*) FROM deliveries WHERE state = 'sent'")"
if [ "$(sql "$big" "SELECT count(*) FROM deliveries WHERE state <> 'sent'")" != 0 ]; then
	echo "  the advance after the restart answered:" >&2
	printf '%s\n' "$OUT" | sed 's/^/    | /' >&2
	queue_report "$big"
fi
check_eq "no (rule, customer, occurrence, action) has two rows" 0 \
	"$(sql "$big" "SELECT count(*) FROM (SELECT 1 FROM deliveries GROUP BY rule, customer_id, occurrence, action HAVING count(*) > 1)")"
for ch in webhook sms; do
	out=$(spool_check "$big" "$ch")
	check_rc "$ch: exactly one spool file per delivery id ($out)" 0 $?
done
stop_daemon "$big"
check_eq "stopped after the recovery with status 0" 0 "$EXIT_STATUS"
check_log_clean "$big"

e2e_finish
