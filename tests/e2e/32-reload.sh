#!/usr/bin/env bash
# 32-reload: `nudgectl reload` and SIGHUP swap the rule set whole, or not at all.
#
# Starts nudged on a copy of the shipped rules/ and proves:
#   1. A new rule file with a mistake (a misspelt field, a misspelt trigger
#      kind, `day:` for `days:` in a weekly trigger, an unclosed quote, a
#      rule name used twice): `nudgectl reload` exits 1 and prints
#      FILE:LINE:COL (with the source line and a caret where there is one),
#      and `nudgectl rules` still lists the old set with the same rule set
#      version; the daemon keeps working (an advance still fires the old
#      rules).
#   2. Fixed, the reload exits 0 and reports the rule as added (human and
#      --json output); the version goes up.
#   3. A changed audience is reported as changed, and only that rule.
#   4. A removed file is reported as removed.
#   5. A reload with nothing changed reports nothing added, removed or changed.
#   6. SIGHUP reloads too: the version in `status --json` goes up and the new
#      rule is listed; a SIGHUP with a broken file keeps the old set and logs
#      the located error.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 32-reload

rules=$E2E_TMP/rules
mkdir -p "$rules"
cp "$NUDGE_SRC"/rules/* "$rules/"
inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC
start_daemon "$inst" 2027-01-01T00:00:00Z

# added, removed and changed as three arrays of names (an entry may be a
# name or an object with a name and details).
names_of='.added, .removed, .changed | [.[] | if type == "object" then .name else . end]'
rule_names() { ctl_json "$inst" rules | jq -r '[.rules[].name] | sort | join(",")'; }
rules_version() { ctl_json "$inst" rules | jq -r '.version'; }
status_version() { ctl_json "$inst" status | jq -r '.ruleset_version'; }

shipped=$(cd "$NUDGE_SRC/rules" && grep -h '^name:' ./*.yaml | sed 's/^name: *//' | sort | paste -sd,)
names0=$(rule_names)
check_eq "the daemon runs the shipped rules" "$shipped" "$names0"
v0=$(rules_version)
check_eq "rules and status agree on the rule set version" "$v0" "$(status_version)"

# ---- 1. mistakes keep the old set ------------------------------------------------
# bad_rule WHAT LINE_ERE NEEDLE CARET(yes|no): vip.yaml holds a mistake; the
# reload must fail, locate it, and leave the running set alone.
bad_rule() {
	local what=$1 line=$2 needle=$3 caret=$4
	run_cmd ctl "$inst" reload
	check_rc "reload with $what fails" 1 "$RC"
	check_match "reload with $what prints vip.yaml:LINE:COL" "$ERR" \
		"vip\.yaml:($line):[0-9]+: error: "
	[ -z "$needle" ] || check_contains "reload with $what explains it" "$ERR" "$needle"
	if [ "$caret" = yes ]; then
		has_caret_line "$ERR"
		check_rc "reload with $what shows a caret under the mistake" 0 $?
	fi
	check_eq "after $what the old rules are still listed" "$names0" "$(rule_names)"
	check_eq "after $what the rule set version is unchanged" "$v0" "$(rules_version)"
	check_eq "after $what status reports the same version" "$v0" "$(status_version)"
}

cat >"$rules/vip.yaml" <<'YAML'
name: vip-weekly
category: marketing
trigger: { weekly: { days: [mon], at: "10:00" } }
audience: teir = 'high-value' and consents('sms')
actions:
  - sms: { text: "Hi {{first_name}}, your VIP week starts now." }
YAML
bad_rule "a misspelt field (teir)" 4 "tier" yes

sed -i 's/teir/tier/; s/{ weekly:/{ wekly:/' "$rules/vip.yaml"
bad_rule "a misspelt trigger kind (wekly)" 3 "weekly" yes

sed -i 's/{ wekly: { days:/{ weekly: { day:/' "$rules/vip.yaml"
bad_rule "'day:' instead of 'days:' in a weekly trigger" 3 "days" yes

sed -i 's/{ weekly: { day:/{ weekly: { days:/; s/^name: vip-weekly/name: "vip-weekly/' "$rules/vip.yaml"
bad_rule "an unclosed quote" '[0-9]+' "" no

sed -i 's/^name: "vip-weekly/name: vip-weekly/' "$rules/vip.yaml"
sed 's/^name: vip-weekly/name: birthday-greeting/' "$rules/vip.yaml" >"$rules/zz-dup.yaml"
run_cmd ctl "$inst" reload
check_rc "reload with a rule name used twice fails" 1 "$RC"
check_contains "reload with a rule name used twice names the name" "$ERR" "birthday-greeting"
check_match "reload with a rule name used twice prints FILE:LINE:COL" "$ERR" \
	"(zz-dup|birthday)\.yaml:[0-9]+:[0-9]+: error: "
check_eq "after a duplicate name the old rules are still listed" "$names0" "$(rule_names)"
check_eq "after a duplicate name the version is unchanged" "$v0" "$(rules_version)"
rm -f "$rules/zz-dup.yaml"

# The old set is not just listed but running: the monthly callback fires.
cat >"$E2E_TMP/customers.csv" <<'CSV'
id,name,first_name,email,phone,birthday,tz,tier,owner,consent_email,consent_sms
V1,Vera Vip,Vera,vera@example.com,+12025550111,1980-06-01,UTC,high-value,alice,yes,yes
P2,Paul Pot,Paul,paul@example.com,+12025550112,1981-07-02,UTC,potential,bob,yes,yes
CSV
run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
check_rc "import two customers" 0 "$RC"
# Put vip.yaml back into a broken state while the clock moves.
sed -i 's/tier = /teir = /' "$rules/vip.yaml"
ctl "$inst" reload >/dev/null 2>&1
run_cmd ctl "$inst" advance --to 2027-01-01T12:00:00Z
check_rc "advance after failed reloads" 0 "$RC"
check_eq "the old rule set still fires after failed reloads (monthly-callback for V1)" 1 \
	"$(sql "$inst" "SELECT count(*) FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE d.rule = 'monthly-callback' AND c.ext_id = 'V1'")"

# ---- 2. fixed: added ---------------------------------------------------------------
sed -i 's/teir = /tier = /' "$rules/vip.yaml"
run_cmd ctl "$inst" reload
check_rc "reload of the fixed file" 0 "$RC"
check_match "reload reports the rule as added" "$OUT" "added:.*vip-weekly"
check_not_contains "reload reports nothing removed" "$OUT" "removed:"
check_not_contains "reload reports nothing changed" "$OUT" "changed:"
v1=$(rules_version)
check_true "the version went up ($v0 -> $v1)" test "$v1" -gt "$v0"
check_eq "status reports the new version" "$v1" "$(status_version)"
check_eq "the new rule is listed" "$(printf '%s\n' "$names0" vip-weekly | tr , '\n' | sort | paste -sd,)" "$(rule_names)"
check_eq "the new rule has its next fire on Monday 10:00" "2027-01-04T10:00:00Z" \
	"$(ctl_json "$inst" rules | jq -r '.rules[] | select(.name == "vip-weekly") | .next_fire')"

# ---- 3. changed audience -----------------------------------------------------------
sed -i "s/tier = 'high-value'/tier in ('high-value', 'potential')/" "$rules/vip.yaml"
run_cmd ctl_json "$inst" reload
check_rc "reload with a changed audience" 0 "$RC"
check_eq "the changed rule is reported as changed, and only it" '[]|[]|["vip-weekly"]' \
	"$(jq -c "$names_of" <<<"$OUT" | paste -sd'|')"
# P2 (potential, SMS consent) comes in, nobody drops out.
check_eq "reload says how many customers the new audience lets in and drops" '{"enter":1,"leave":0}' \
	"$(jq -c '.changed[0].audience' <<<"$OUT")"
check_eq "the new audience is in effect" "tier in ('high-value', 'potential') and consents('sms')" \
	"$(ctl_json "$inst" rules | jq -r '.rules[] | select(.name == "vip-weekly") | .audience')"
run_cmd ctl "$inst" reload
check_rc "reload with nothing changed" 0 "$RC"
check_not_contains "an unchanged reload reports nothing added" "$OUT" "added:"
check_not_contains "an unchanged reload reports nothing changed" "$OUT" "changed:"
check_not_contains "an unchanged reload reports nothing removed" "$OUT" "removed:"

# A change to a template (not the YAML) counts as a change of the rule.
printf 'Happy birthday, {{first_name}}! (reworded)\n' >"$rules/birthday.subject"
run_cmd ctl_json "$inst" reload
check_eq "a changed template is reported as a change of its rule" '["birthday-greeting"]' \
	"$(jq -c "$names_of" <<<"$OUT" | sed -n 3p)"

# ---- 4. removed ----------------------------------------------------------------------
rm "$rules/vip.yaml"
run_cmd ctl "$inst" reload
check_rc "reload after removing a file" 0 "$RC"
check_match "reload reports the rule as removed" "$OUT" "removed:.*vip-weekly"
check_eq "the removed rule is gone from the list" "$names0" "$(rule_names)"
v2=$(rules_version)

# ---- 5. SIGHUP ---------------------------------------------------------------------
pid=$(daemon_pid "$inst")
cat >"$rules/hup.yaml" <<'YAML'
name: hup-daily
category: care
trigger: { daily: { at: "08:00" } }
audience: tier = 'high-value'
actions:
  - task: { kind: callback, assign: owner, due_in: 1d, note: "Call {{name}}" }
YAML
kill -HUP "$pid"
v3=$v2
for _ in $(seq 1 100); do
	v3=$(status_version)
	[ "$v3" -gt "$v2" ] && break
	sleep 0.1
done
check_true "SIGHUP reloads: the version goes up ($v2 -> $v3)" test "$v3" -gt "$v2"
check_contains "after SIGHUP the new rule is listed" "$(rule_names)" "hup-daily"

# A SIGHUP with a broken file keeps the set and says why in the log.
sed -i 's/^audience: tier/audience: tire/' "$rules/hup.yaml"
lines_before=$(wc -l <"$inst/nudged.log")
kill -HUP "$pid"
logged=""
for _ in $(seq 1 100); do
	logged=$(tail -n +"$((lines_before + 1))" "$inst/nudged.log" | grep -E 'hup\.yaml:[0-9]+:[0-9]+: error' || true)
	[ -n "$logged" ] && break
	sleep 0.1
done
check_true "a failed SIGHUP reload logs hup.yaml:LINE:COL" test -n "$logged"
check_eq "a failed SIGHUP reload keeps the version" "$v3" "$(status_version)"
check_contains "a failed SIGHUP reload keeps the rules" "$(rule_names)" "hup-daily"
check_true "the daemon is alive after the reloads" daemon_alive "$inst"

stop_daemon "$inst"
check_eq "the daemon stops with status 0" 0 "$EXIT_STATUS"
check_log_clean "$inst"

e2e_finish
