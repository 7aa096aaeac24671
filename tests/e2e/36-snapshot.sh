#!/usr/bin/env bash
# 36-snapshot: queued deliveries are sent as they were enqueued.
#
# A rule `promo` with actions [email, webhook] (the email's body includes a
# partial, footer.mustache) and a rule `notice` (email only) fire at 10:00.
# The webhook receiver (tests/http/receiver.py) answers 500 and the SMTP
# port refuses connections, so all three deliveries wait in `retry`. Then:
# the actions of promo are swapped, the partial is edited, notice.yaml is
# deleted, the rules are reloaded; the daemon is restarted with the email
# channel on the spool transport and a receiver answering 200, and the
# clock moves past the retries. Checked:
#   1. a template including a missing partial fails the reload with
#      FILE:LINE:COL (partials are read with the rules, not at render);
#   2. the queued webhook delivery reaches the webhook receiver as a webhook
#      (channel webhook, to = the url), not rendered with the email action;
#   3. the queued email uses the original partial (FOOTER-V1);
#   4. notice's delivery is sent although its rule file is gone;
#   5. the next day's fire uses the new rule version (FOOTER-V2, webhook as
#      action 0);
#   6. a row whose channel does not match its action is dead-lettered with
#      a reason, never handed to another channel's backend; the old
#      version's snapshot is removed once all its rows are settled.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 36-snapshot

log=$E2E_TMP/requests.jsonl
# start_receiver STATUS [PORT]: receiver.py answering STATUS on /hook; sets
# port and rpid.
start_receiver() {
	: >"$E2E_TMP/receiver.out"
	"$PY" "$NUDGE_SRC/tests/http/receiver.py" --port "${2:-0}" --log "$log" \
		--route "/hook={\"status\": $1}" >"$E2E_TMP/receiver.out" 2>"$E2E_TMP/receiver.err" &
	rpid=$!
	E2E_PIDS+=("$rpid")
	port=
	for _ in $(seq 1 100); do
		port=$(head -n1 "$E2E_TMP/receiver.out" 2>/dev/null)
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || die "receiver.py did not report its port: $(cat "$E2E_TMP/receiver.err")"
}
start_receiver 500
# A port nothing listens on: SMTP connections are refused (a transient failure).
closed=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

rules=$E2E_TMP/rules
mkdir -p "$rules"
cat >"$rules/promo.yaml" <<YAML
name: promo
category: care
trigger: { daily: { at: "10:00" } }
actions:
  - email: { template: promo }
  - webhook: { url: "http://127.0.0.1:$port/hook" }
YAML
printf 'Hello {{first_name}}\n' >"$rules/promo.subject"
printf 'Dear {{first_name}},\n{{> footer}}\n' >"$rules/promo.txt"
printf 'FOOTER-V1\n' >"$rules/footer.mustache"
cat >"$rules/notice.yaml" <<'YAML'
name: notice
category: care
trigger: { daily: { at: "10:00" } }
actions:
  - email: { template: notice }
YAML
printf 'Notice\n' >"$rules/notice.subject"
printf 'NOTICE-BODY {{first_name}}\n' >"$rules/notice.txt"

inst=$E2E_TMP/inst
mkdir -p "$inst"
write_config() { # EMAIL_TRANSPORT_YAML
	config_head "$inst" "$rules" UTC >"$inst/nudge.yaml"
	cat >>"$inst/nudge.yaml" <<YAML
channels:
  email: $1
  webhook: { transport: http, timeout: 5 }
YAML
}
write_config "{ transport: smtp, host: 127.0.0.1, port: $closed, starttls: \"no\", from: \"Shop <shop@example.com>\" }"
cat >"$E2E_TMP/customers.csv" <<'CSV'
id,name,first_name,email,tz,consent_email
C1,Carol Chen,Carol,carol@example.com,UTC,yes
CSV

start_daemon "$inst" 2027-03-01T00:00:00Z
run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
check_rc "import customers" 0 "$RC"
run_cmd ctl "$inst" advance --to 2027-03-01T10:00:30Z
check_rc "advance to the 10:00 fire" 0 "$RC"
states=$(sql "$inst" "SELECT rule || ':' || action || ':' || channel || ':' || state FROM deliveries ORDER BY rule, action" | paste -sd' ')
check_eq "all three deliveries wait for a retry" "notice:0:email:retry promo:0:email:retry promo:1:webhook:retry" "$states"
check_eq "the webhook receiver was tried once (500)" 1 "$(grep -c '"/hook"' "$log")"
check_eq "every delivery refers to a rule snapshot" 0 \
	"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE snapshot IS NULL")"

# ---- 1. a missing partial is a load error ---------------------------------------
printf 'Dear {{first_name}},\n  {{> footer2}}\n' >"$rules/promo.txt"
run_cmd ctl "$inst" reload
check_rc "reload with a missing partial fails" 1 "$RC"
check_match "the error is located at the partial tag" "$ERR" "promo\.txt:2:3: error: partial 'footer2'"
printf 'Dear {{first_name}},\n{{> footer}}\n' >"$rules/promo.txt"

# ---- swap, edit, delete, reload -----------------------------------------------------
cat >"$rules/promo.yaml" <<YAML
name: promo
category: care
trigger: { daily: { at: "10:00" } }
actions:
  - webhook: { url: "http://127.0.0.1:$port/hook" }
  - email: { template: promo }
YAML
printf 'FOOTER-V2\n' >"$rules/footer.mustache"
rm "$rules/notice.yaml" "$rules/notice.subject" "$rules/notice.txt"
run_cmd ctl "$inst" reload
check_rc "reload with swapped actions, an edited partial and a deleted rule" 0 "$RC"

# ---- restart with working transports; let the retries go ------------------------------
stop_daemon "$inst"
kill -TERM "$rpid" 2>/dev/null
wait "$rpid" 2>/dev/null
start_receiver 200 "$port"
write_config '{ transport: spool, from: "Shop <shop@example.com>" }'
# A row whose stored channel disagrees with its action (which the evaluator
# never writes): a copy of the queued email row, queued for the webhook
# channel. It must be dead-lettered, never handed to the webhook backend
# (checked below: the receiver gets one request after the failed one).
sqlite3 "$inst/nudge.db" "INSERT INTO deliveries (rule, customer_id, occurrence, action, channel,
	due_at, created_at, next_attempt_at, snapshot) SELECT rule, customer_id, 'forged', action,
	'webhook', due_at, created_at, next_attempt_at, snapshot FROM deliveries
	WHERE rule = 'promo' AND channel = 'email'" || die "cannot add the forged row"
start_daemon "$inst" 2027-03-01T10:00:30Z
run_cmd ctl "$inst" advance --to 2027-03-01T11:00:00Z
check_rc "advance past the retries" 0 "$RC"
states=$(sql "$inst" "SELECT rule || ':' || action || ':' || channel || ':' || state FROM deliveries WHERE occurrence != 'forged' ORDER BY rule, action" | paste -sd' ')
check_eq "all three queued deliveries are sent" "notice:0:email:sent promo:0:email:sent promo:1:webhook:sent" "$states"

# ---- 2. the webhook went out as a webhook --------------------------------------------
hook_id=$(sql "$inst" "SELECT id FROM deliveries WHERE rule = 'promo' AND channel = 'webhook' AND occurrence != 'forged'")
OUT=$("$PY" - "$log" "$hook_id" "http://127.0.0.1:$port/hook" <<'PY' 2>&1
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
ok = [r for r in reqs if r["path"] == "/hook"][1:]
problems = []
if len(ok) != 1:
    problems.append("expected one request after the failed one, got %d" % len(ok))
for r in ok:
    j = r["json"] or {}
    if j.get("channel") != "webhook": problems.append("channel %r" % j.get("channel"))
    if j.get("to") != sys.argv[3]: problems.append("to %r" % j.get("to"))
    if j.get("delivery_id") != int(sys.argv[2]): problems.append("delivery_id %r" % j.get("delivery_id"))
    if "subject" in j: problems.append("an email subject in the webhook body")
print("; ".join(problems) or "ok")
PY
)
check_eq "the queued webhook reached the receiver as a webhook of the original rule" ok "$OUT"

# ---- 3, 4. the emails as enqueued -------------------------------------------------------
promo_id=$(sql "$inst" "SELECT id FROM deliveries WHERE rule = 'promo' AND channel = 'email'")
notice_id=$(sql "$inst" "SELECT id FROM deliveries WHERE rule = 'notice'")
eml=$(cat "$inst/spool/email/$promo_id.eml" 2>/dev/null)
check_contains "the queued email uses the partial as it was (FOOTER-V1)" "$eml" "FOOTER-V1"
check_not_contains "the queued email does not use the edited partial" "$eml" "FOOTER-V2"
check_contains "the queued email went to the customer" "$eml" "carol@example.com"
check_contains "the deleted rule's queued email was sent" \
	"$(cat "$inst/spool/email/$notice_id.eml" 2>/dev/null)" "NOTICE-BODY Carol"

# ---- 5. the next fire uses the new version --------------------------------------------
run_cmd ctl "$inst" advance --to 2027-03-02T10:00:30Z
check_rc "advance to the next day's fire" 0 "$RC"
new=$(sql "$inst" "SELECT action || ':' || channel || ':' || state FROM deliveries WHERE rule = 'promo' AND occurrence NOT IN ('forged', (SELECT occurrence FROM deliveries WHERE id = $promo_id)) ORDER BY action" | paste -sd' ')
check_eq "the new version enqueues webhook first, then email" "0:webhook:sent 1:email:sent" "$new"
new_id=$(sql "$inst" "SELECT id FROM deliveries WHERE rule = 'promo' AND channel = 'email' AND id != $promo_id")
check_contains "a new email uses the edited partial" \
	"$(cat "$inst/spool/email/$new_id.eml" 2>/dev/null)" "FOOTER-V2"
check_eq "the old and new versions have different snapshots" 2 \
	"$(sql "$inst" "SELECT count(DISTINCT snapshot) FROM deliveries WHERE rule = 'promo'")"

# ---- 6. garbage collection -----------------------------------------------------------
# A day later, snapshots no row that may still be sent refers to are gone:
# notice's (its one row is sent), not promo's first version (the forged row
# below is dead, and a dead row can be retried).
old_snap=$(sql "$inst" "SELECT snapshot FROM deliveries WHERE id = $promo_id")
run_cmd ctl "$inst" advance --to 2027-03-03T11:00:00Z
check_rc "advance a day" 0 "$RC"
check_eq "the deleted rule's snapshot is collected once its rows are sent" 0 \
	"$(sql "$inst" "SELECT count(*) FROM rule_snapshots WHERE rule = 'notice'")"
check_eq "promo's first version is kept while a dead row refers to it" 1 \
	"$(sql "$inst" "SELECT count(*) FROM rule_snapshots WHERE id = $old_snap")"
check_eq "promo has two snapshots (first and current version)" 2 \
	"$(sql "$inst" "SELECT count(*) FROM rule_snapshots WHERE rule = 'promo'")"
row=$(sql "$inst" "SELECT state || '|' || last_error FROM deliveries WHERE occurrence = 'forged'")
check_match "the row whose channel is not its action's was dead-lettered with a reason" "$row" \
	"^dead\|delivery is queued for the webhook channel but action 0 of rule 'promo' is for the email channel"

stop_daemon "$inst"
check_log_clean "$inst"
e2e_finish
