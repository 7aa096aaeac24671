#!/usr/bin/env bash
# 43-tasks-view: `nudgectl tasks` shows each due time in the assignee's own
# zone (channels.task.staff entries may carry a tz), the customer's name
# beside their id, and a task notification that failed for good (here: no
# address for bob in notify.email), which is also logged.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 43-tasks-view

rules=$E2E_TMP/rules
mkdir -p "$rules"
cat >"$rules/call.yaml" <<'YAML'
name: call
category: care
trigger: { daily: { at: "09:00" } }
actions:
  - task: { kind: callback, assign: owner, due_in: 1d, note: "Call {{first_name}}" }
YAML
inst=$E2E_TMP/inst
mkdir -p "$inst"
{
	config_head "$inst" "$rules" UTC
	cat <<'YAML'
channels:
  email: { transport: spool, from: "Shop <shop@example.com>" }
  task:
    transport: task
    staff: [{ name: alice, tz: Asia/Shanghai }, bob]
    notify: { email: { alice: alice@shop.example } }
YAML
} >"$inst/nudge.yaml"
run_cmd "$NUDGED" -c "$inst/nudge.yaml" --check
check_rc "staff with a tz is a valid configuration" 0 "$RC"
printf 'id,name,first_name,owner\nc1,Ann Lee,Ann,alice\nc2,Bo Chen,Bo,bob\n' >"$inst/customers.csv"
start_daemon "$inst" 2027-05-01T00:00:00Z
run_cmd ctl "$inst" import customers "$inst/customers.csv"
check_rc "import customers" 0 "$RC"
ctl "$inst" advance --to 2027-05-01T09:00:00Z >/dev/null
run_cmd ctl "$inst" tasks
check_rc "nudgectl tasks" 0 "$RC"
alice=$(grep -E '^[0-9]+ +callback +alice ' <<<"$OUT")
bob=$(grep -E '^[0-9]+ +callback +bob ' <<<"$OUT")
check_contains "alice's task is due at 17:00 her time (Asia/Shanghai)" "$alice" "2027-05-02T17:00:00+08:00"
check_contains "bob's is due in the default zone" "$bob" "2027-05-02T09:00:00+00:00"
check_contains "the customer's name is shown with the id" "$alice" "c1 Ann Lee"
check_contains "bob's failed notification is shown" "$bob" "[notify failed: email: no address for bob"
check_not_contains "alice's (sent) is not" "$alice" "notify failed"
check_contains "and the failure is logged" "$(cat "$inst/nudged.log")" "notifying bob by email failed for good: no address for bob"
run_cmd ctl_json "$inst" tasks
check_eq "--json has due_local and due_tz" "2027-05-02T17:00:00+08:00 Asia/Shanghai" \
	"$(jq -r '.tasks[] | select(.assignee == "alice") | "\(.due_local) \(.due_tz)"' <<<"$OUT")"
stop_daemon "$inst"

# A staff tz that is no zone is refused at the check.
sed -i 's/tz: Asia\/Shanghai/tz: Mars\/Olympus/' "$inst/nudge.yaml"
run_cmd "$NUDGED" -c "$inst/nudge.yaml" --check
check_rc "an unknown staff zone fails the check" 1 "$RC"
check_contains "saying what is expected" "$ERR" "staff must be a list of names or { name, tz } mappings"
check_log_clean "$inst"
e2e_finish
