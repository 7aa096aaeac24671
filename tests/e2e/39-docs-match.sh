#!/usr/bin/env bash
# 39-docs-match: what the man pages now say, checked against the daemon:
#   - nudgectl(1): an import with a bad row imports nothing (exit 1);
#   - nudge-rules(5): a weekly rule's occurrence key is the local date, one
#     per listed weekday; round-robin assigns staff[delivery id mod n];
#     amount_off alone makes a coupon (coupon.amount_off in templates);
#   - nudgectl(1): queue lists deliveries oldest first (by id).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 39-docs-match

rules=$E2E_TMP/rules
mkdir -p "$rules"
cat >"$rules/weekly.yaml" <<'YAML'
name: weekly
trigger: { weekly: { days: [mon, thu], at: "09:00" } }
coupon: { amount_off: 5, valid_days: 7 }
actions:
  - sms: { text: "{{coupon.amount_off}} off: {{coupon.code}}" }
YAML
cat >"$rules/rr.yaml" <<'YAML'
name: rr
category: care
trigger: { daily: { at: "10:00" } }
actions:
  - task: { kind: callback, assign: round-robin, due_in: 1d, note: "call" }
YAML
inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC
start_daemon "$inst" 2027-05-02T00:00:00Z # a Sunday
printf 'id,name,phone\nc1,Ann,+15550000001\nc2,Bob,+15550000002\nc3,Cy,not-a-phone\n' >"$inst/bad.csv"
run_cmd ctl "$inst" import customers "$inst/bad.csv"
check_rc "an import with a bad row fails" 1 "$RC"
check_eq "and imports nothing, not even the good rows" 0 "$(sql "$inst" 'SELECT count(*) FROM customers')"
printf 'id,name,phone\nc1,Ann,+15550000001\nc2,Bob,+15550000002\nc3,Cy,+15550000003\n' >"$inst/good.csv"
run_cmd ctl "$inst" import customers "$inst/good.csv"
check_rc "the fixed file imports" 0 "$RC"
ctl "$inst" advance --to 2027-05-07T00:00:00Z >/dev/null
check_eq "weekly on mon and thu: one occurrence per fire, the local date" \
	"2027-05-03,2027-05-06" \
	"$(sql "$inst" "SELECT group_concat(o) FROM (SELECT DISTINCT occurrence o FROM deliveries WHERE rule = 'weekly' ORDER BY o)")"
check_match "amount_off alone makes a coupon, seen as coupon.amount_off" \
	"$(cat "$inst"/spool/sms/*.json | head -c 4000)" '"text": *"5 off: [A-Z0-9-]+'
rr=$(sql "$inst" "SELECT count(*) FROM tasks WHERE assignee <> CASE delivery_id % 2 WHEN 0 THEN 'alice' ELSE 'bob' END")
check_eq "round-robin gives task of delivery n to staff[n mod 2]" 0 "$rr"
check_true "and both staff got some" test "$(sql "$inst" 'SELECT count(DISTINCT assignee) FROM tasks')" = 2
run_cmd ctl_json "$inst" queue
ids=$(jq -r '[.deliveries[].id] | map(tostring) | join(" ")' <<<"$OUT")
sorted=$(tr ' ' '\n' <<<"$ids" | sort -n | tr '\n' ' ' | sed 's/ $//')
check_eq "queue lists oldest first" "$sorted" "$ids"
stop_daemon "$inst"
check_log_clean "$inst"
e2e_finish
