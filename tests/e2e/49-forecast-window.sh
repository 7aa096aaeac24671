#!/usr/bin/env bash
# 49-forecast-window: `nudgectl forecast --from A --to B` lists the fires of
# the half-open window [A, B): a daily 09:00 rule forecast from 09:00 on
# 2 May to 09:00 on 4 May lists 2 and 3 May, not 4 May; two consecutive
# windows together list each fire once.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 49-forecast-window

rules=$E2E_TMP/rules
mkdir -p "$rules"
printf 'name: daily-nine\ntrigger: { daily: { at: "09:00" } }\nactions:\n  - email: { template: msg }\n' >"$rules/daily-nine.yaml"
printf 'Hi\n' >"$rules/msg.subject"
printf 'Hi\n' >"$rules/msg.txt"
inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC
printf 'id,name,email\nc1,Cee One,c1@example.com\n' >"$inst/customers.csv"
start_daemon "$inst" 2027-05-01T00:00:00Z
run_cmd ctl "$inst" import customers "$inst/customers.csv"
check_rc "import one customer" 0 "$RC"
ats() { jq -r '[.rows[] | (.at // .due_at // .time)] | join(" ")' <<<"$1"; }
run_cmd ctl_json "$inst" forecast --from 2027-05-02T09:00:00Z --to 2027-05-04T09:00:00Z
check_rc "forecast [2 May 09:00, 4 May 09:00)" 0 "$RC"
check_eq "a fire exactly at --from is listed, one exactly at --to is not" \
	"2027-05-02T09:00:00Z 2027-05-03T09:00:00Z" "$(ats "$OUT")"
run_cmd ctl_json "$inst" forecast --from 2027-05-04T09:00:00Z --to 2027-05-05T09:00:00Z
check_eq "the next window starts with the fire the last one left out" \
	"2027-05-04T09:00:00Z" "$(ats "$OUT")"
run_cmd ctl_json "$inst" forecast --from 2027-05-02T09:00:01Z --to 2027-05-03T09:00:01Z
check_eq "a window starting a second after a fire does not list it" \
	"2027-05-03T09:00:00Z" "$(ats "$OUT")"
stop_daemon "$inst"
check_log_clean "$inst"
e2e_finish
