#!/usr/bin/env bash
# 47-caps: frequency caps count local calendar days in the customer's zone,
# a message over a cap is deferred to the next local day (not dropped)
# unless its rule says on_cap: drop, and rule priority decides which message
# of a crowded day goes out.
#
# policy.max_per_day: 1, no quiet hours. Customer s1 lives in Asia/Shanghai
# (UTC+8), customer p1 in UTC.
#   1. s1: `night` (23:30 local) goes out on 1 May; `morning` (00:30 local,
#      one hour later) is a new local day and goes out too (a rolling
#      24 hours would have stopped it).
#   2. s1 on 2 May: morning went out, so night at 23:30 is over the cap: it
#      stays pending until 00:00 local on 3 May (16:00Z), with the cap as
#      its reason, and is sent then.
#   3. p1: `a-low` (email, priority 0) and `high` (sms, priority 10) are
#      both due at 09:00; a-low is older (enqueued first) yet high goes out
#      and a-low waits for the next day; `dropper` (on_cap: drop) at 10:00 is
#      suppressed with the cap as its reason. No customer ever gets two
#      marketing messages on one local day.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 47-caps

rules=$E2E_TMP/rules
mkdir -p "$rules"
rule() { # name at audience channel [extra]
	local act
	if [ "$4" = sms ]; then act='sms: { text: "Hi {{first_name}}" }'; else act='email: { template: msg }'; fi
	cat >"$rules/$1.yaml" <<YAML
name: $1
trigger: { daily: { at: "$2" } }
audience: tier = '$3'
${5:-}
actions:
  - $act
YAML
}
rule night 23:30 s email
rule morning 00:30 s email
rule a-low 09:00 p email
rule high 09:00 p sms "priority: 10"
rule dropper 10:00 p email "on_cap: drop"
printf 'Hello {{first_name}}\n' >"$rules/msg.subject"
printf 'Rule {{rule}}\n' >"$rules/msg.txt"

inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC "policy: { max_per_day: 1 }"
printf 'id,name,email,phone,tz,tier\ns1,Sun Li,s1@example.com,+8613800000001,Asia/Shanghai,s\np1,Pat Doe,p1@example.com,+15550000001,UTC,p\n' >"$inst/customers.csv"
start_daemon "$inst" 2027-05-01T10:00:00Z
run_cmd ctl "$inst" import customers "$inst/customers.csv"
check_rc "import two customers" 0 "$RC"
ts() { date -ud "$1" +%s; }
state() { sql "$inst" "SELECT state FROM deliveries WHERE rule = '$1' AND occurrence = '$2'"; }

# ---- 1. a local day, not 24 hours -----------------------------------------------
ctl "$inst" advance --to 2027-05-01T15:30:00Z >/dev/null # 23:30 on 1 May in Shanghai
check_eq "night of 1 May (23:30 Shanghai) is sent" sent "$(state night 2027-05-01)"
ctl "$inst" advance --to 2027-05-01T16:30:00Z >/dev/null # 00:30 on 2 May in Shanghai
check_eq "morning of 2 May (00:30 Shanghai, an hour later) is a new local day and is sent" \
	sent "$(state morning 2027-05-02)"

# ---- 2. over the cap: deferred to the next local day ------------------------------
ctl "$inst" advance --to 2027-05-02T15:30:00Z >/dev/null # 23:30 on 2 May in Shanghai
row=$(sql "$inst" "SELECT state || '|' || next_attempt_at || '|' || attempts FROM deliveries WHERE rule = 'night' AND occurrence = '2027-05-02'")
check_eq "night of 2 May waits for 00:00 on 3 May Shanghai (16:00Z), no attempt counted" \
	"pending|$(ts 2027-05-02T16:00:00Z)|0" "$row"
why=$(sql "$inst" "SELECT last_error FROM deliveries WHERE rule = 'night' AND occurrence = '2027-05-02'")
check_eq "its reason names the cap, the local day and zone, and when it goes" \
	"frequency cap (max_per_day 1): 1 already on 2027-05-02 (Asia/Shanghai); deferred to 2027-05-02T16:00:00Z" "$why"
ctl "$inst" advance --to 2027-05-02T16:00:00Z >/dev/null
row=$(sql "$inst" "SELECT state || '|' || sent_at FROM deliveries WHERE rule = 'night' AND occurrence = '2027-05-02'")
check_eq "the deferred message is sent when 3 May starts in Shanghai" "sent|$(ts 2027-05-02T16:00:00Z)" "$row"
ctl "$inst" advance --to 2027-05-02T16:30:00Z >/dev/null
check_eq "morning of 3 May now finds the day taken and waits" pending "$(state morning 2027-05-03)"

# ---- 3. priority and on_cap: drop (p1, fired at 09:00Z and 10:00Z on 2 May) ------
ids=$(sql "$inst" "SELECT (SELECT id FROM deliveries WHERE rule = 'a-low' AND occurrence = '2027-05-02') < (SELECT id FROM deliveries WHERE rule = 'high' AND occurrence = '2027-05-02')")
check_eq "a-low was enqueued before high (a lower id)" 1 "$ids"
check_eq "on 2 May the priority-10 sms goes out" sent "$(state high 2027-05-02)"
row=$(sql "$inst" "SELECT state || '|' || next_attempt_at FROM deliveries WHERE rule = 'a-low' AND occurrence = '2027-05-02'")
check_eq "and the priority-0 email waits for 3 May" "pending|$(ts 2027-05-03T00:00:00Z)" "$row"
row=$(sql "$inst" "SELECT state || '|' || last_error FROM deliveries WHERE rule = 'dropper' AND occurrence = '2027-05-02'")
check_eq "on_cap: drop records the message over the cap as suppressed" \
	"suppressed|frequency cap (max_per_day 1): 1 already on 2027-05-02 (UTC)" "$row"
ctl "$inst" advance --to 2027-05-03T00:00:00Z >/dev/null
ctl "$inst" advance --to 2027-05-03T09:00:00Z >/dev/null
check_eq "on 3 May the deferred email goes out at midnight" "sent|$(ts 2027-05-03T00:00:00Z)" \
	"$(sql "$inst" "SELECT state || '|' || sent_at FROM deliveries WHERE rule = 'a-low' AND occurrence = '2027-05-02'")"
check_eq "so the 3 May high sms waits for 4 May" pending "$(state high 2027-05-03)"
per_day=$(sql "$inst" "SELECT max(n) FROM (SELECT count(*) n FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE d.state = 'sent' GROUP BY c.id, date(d.sent_at + CASE c.tz WHEN 'Asia/Shanghai' THEN 28800 ELSE 0 END, 'unixepoch'))")
check_eq "no customer got more than one marketing message on any local day" 1 "$per_day"
check_true "every sent email has one spool file" spool_check "$inst" email
stop_daemon "$inst"
check_log_clean "$inst"
e2e_finish
