#!/usr/bin/env bash
# 48-backfill: an `entered` rule added with backfill: false starts without a
# backlog. The customers already inside the condition when the rule is
# first evaluated become members without a message; customers who enter
# later fire as usual. The same rule without the key (backfill: true, the
# default) sends to everyone already inside at its first fire.
#
# Customers: old (last order 2026-01-10, lapsed long ago) and fresh (last
# order 2027-03-01, lapses on 2027-05-30). The daemon starts with no rules,
# the customers and orders are imported, then the two rules are added and
# reloaded on 2027-05-01.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 48-backfill

rules=$E2E_TMP/rules
mkdir -p "$rules"
inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC
printf 'id,name,email\nold,Old Timer,old@example.com\nfresh,Fresh Face,fresh@example.com\n' >"$inst/customers.csv"
printf 'customer_id,order_id,amount,currency,ordered_at\nold,O1,10.00,USD,2026-01-10T10:00:00Z\nfresh,O2,10.00,USD,2027-03-01T10:00:00Z\n' >"$inst/orders.csv"
start_daemon "$inst" 2027-05-01T08:00:00Z
run_cmd ctl "$inst" import customers "$inst/customers.csv"
check_rc "import customers" 0 "$RC"
run_cmd ctl "$inst" import orders "$inst/orders.csv"
check_rc "import orders" 0 "$RC"

for r in winback-all:true winback-new:false; do
	name=${r%%:*}
	bf=${r#*:}
	line="backfill: $bf"
	[ "$bf" = true ] && line="" # the default
	cat >"$rules/$name.yaml" <<YAML
name: $name
trigger: { entered: "days_since(last_order_date) >= 90", at: "11:00" $([ -n "$line" ] && echo ", $line") }
actions:
  - email: { template: msg }
YAML
done
printf 'Hello {{first_name}}\n' >"$rules/msg.subject"
printf 'We miss you\n' >"$rules/msg.txt"
run_cmd ctl "$inst" reload
check_rc "reload with the two win-back rules" 0 "$RC"
ctl "$inst" advance --to 2027-05-02T12:00:00Z >/dev/null
who() { sql "$inst" "SELECT group_concat(c.ext_id) FROM (SELECT c.ext_id FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE d.rule = '$1' ORDER BY c.ext_id) c"; }
check_eq "without the key (backfill: true by default), the lapsed customer gets the message" old "$(who winback-all)"
check_eq "with backfill: false, nobody already inside gets one" "" "$(who winback-new)"
members=$(sql "$inst" "SELECT group_concat(c.ext_id) FROM rule_members m JOIN customers c ON c.id = m.customer_id WHERE m.rule = 'winback-new'")
check_eq "the customer already inside is recorded as a member" old "$members"
check_contains "the log says the rule started without a backlog" "$(cat "$inst/nudged.log")" \
	"rule winback-new starts without a backlog (backfill: false): 1 customer(s) already inside"
ctl "$inst" advance --to 2027-05-31T12:00:00Z >/dev/null
check_eq "a customer who lapses later fires under backfill: false" fresh "$(who winback-new)"
check_eq "and under the default" "fresh,old" "$(who winback-all)"

# backfill on a trigger other than entered is an error that says so.
printf 'name: bad\ntrigger: { daily: { at: "09:00" }, backfill: false }\nactions:\n  - email: { template: msg }\n' >"$rules/bad.yaml"
run_cmd "$NUDGECTL" check "$rules"
check_rc "backfill on a daily trigger is refused" 1 "$RC"
check_contains "with the reason" "$OUT$ERR" "backfill applies only to an entered trigger"
rm -f "$rules/bad.yaml"
stop_daemon "$inst"
check_log_clean "$inst"
e2e_finish
