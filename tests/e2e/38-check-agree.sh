#!/usr/bin/env bash
# 38-check-agree: `nudged --check` and `nudgectl check` give the same verdict
# and the same messages on the same files; a rule naming a custom attribute
# no import has brought yet is a warning (in both, and at start-up), not an
# error; a typo of a field stays an error; `nudgectl check` never creates,
# migrates or writes the database (a missing file stays missing, an older
# schema stays as it was, byte for byte).
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 38-check-agree

rules=$E2E_TMP/rules
mkdir -p "$rules"
cat >"$rules/loyal.yaml" <<'YAML'
name: loyal
trigger: { daily: { at: "09:00" } }
audience: loyalty_points > 100
actions:
  - sms: { text: "{{first_name}}, you have {{loyalty_points}} points" }
YAML
inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC

both() { # runs both checks; sets RC_D ERR_D RC_C ERR_C
	run_cmd "$NUDGED" -c "$inst/nudge.yaml" --check
	RC_D=$RC ERR_D=$ERR
	run_cmd "$NUDGECTL" -c "$inst/nudge.yaml" check "$rules"
	RC_C=$RC ERR_C=$ERR
}

# ---- no database yet ---------------------------------------------------------------
both
check_rc "nudged --check accepts a rule naming a not-yet-imported attribute" 0 "$RC_D"
check_rc "nudgectl check agrees" 0 "$RC_C"
check_contains "nudged --check warns about it, with file:line:col" "$ERR_D" \
	"$rules/loyal.yaml:3:11: warning: 'loyalty_points' is not a customer field or an imported attribute"
check_eq "nudgectl check prints the same messages" "$ERR_D" "$ERR_C"
check_true "the missing database is not created by either check" test ! -e "$inst/nudge.db"

# ---- an older schema ---------------------------------------------------------------
sqlite3 "$inst/nudge.db" "CREATE TABLE customers (id INTEGER PRIMARY KEY, ext_id TEXT); PRAGMA user_version = 1;"
sum0=$(sha256sum "$inst/nudge.db" | cut -d' ' -f1)
mtime0=$(stat -c %Y.%y "$inst/nudge.db")
sleep 1.1 # so that any write would show in the mtime
both
check_rc "an older database: nudged --check" 0 "$RC_D"
check_rc "an older database: nudgectl check" 0 "$RC_C"
check_eq "the same messages" "$ERR_D" "$ERR_C"
check_eq "the database bytes are unchanged" "$sum0" "$(sha256sum "$inst/nudge.db" | cut -d' ' -f1)"
check_eq "its mtime is unchanged" "$mtime0" "$(stat -c %Y.%y "$inst/nudge.db")"
check_eq "its schema version is still 1" 1 "$(sqlite3 "$inst/nudge.db" 'PRAGMA user_version')"
check_true "no WAL or journal file was left" test ! -e "$inst/nudge.db-wal" -a ! -e "$inst/nudge.db-journal"
rm -f "$inst/nudge.db"

# ---- a typo is still an error, in both ------------------------------------------------
cat >"$rules/typo.yaml" <<'YAML'
name: typo
trigger: { daily: { at: "09:00" } }
audience: teir = 'vip'
actions:
  - sms: { text: "hi" }
YAML
both
check_rc "a typo of a field fails nudged --check" 1 "$RC_D"
check_rc "and nudgectl check" 1 "$RC_C"
check_contains "with the suggestion" "$ERR_D" "did you mean 'tier'?"
check_eq "the same messages" "$ERR_D" "$ERR_C"
rm -f "$rules/typo.yaml"

# ---- start-up: a warning, not a failure ----------------------------------------------
start_daemon "$inst" 2027-05-01T00:00:00Z
check_true "nudged starts with the rule" daemon_alive "$inst"
check_contains "and logs the warning" "$(cat "$inst/nudged.log")" "warning: 'loyalty_points' is not a customer field"
printf 'id,name,first_name,phone,loyalty_points\nc1,Cee,Cee,+15550000001,150\nc2,Dee,Dee,+15550000002,50\n' >"$inst/customers.csv"
run_cmd ctl "$inst" import customers "$inst/customers.csv"
ctl "$inst" advance --to 2027-05-01T09:00:00Z >/dev/null
check_eq "once imported, the attribute selects the audience" c1 \
	"$(sql "$inst" "SELECT c.ext_id FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE d.rule = 'loyal'")"
stop_daemon "$inst"
run_cmd "$NUDGECTL" -c "$inst/nudge.yaml" check "$rules"
check_not_contains "after the import, nudgectl check has no warning left" "$ERR" "warning"
check_log_clean "$inst"
e2e_finish
