#!/usr/bin/env bash
# 40-webhook-sms: the http transport end to end, against tests/http/receiver.py.
#
# nudged runs the shipped winback and spring-festival rules on a frozen clock
# with channels.webhook and channels.sms on the http transport, both pointed
# at a local receiver (127.0.0.1, a free port). The winback rule is a temp
# copy whose webhook URL (http://127.0.0.1:8080/hooks/winback as shipped) is
# rewritten to the receiver and given `secret_file: hook.secret`; the channel
# has a different default secret_file, so a valid signature also proves that
# the rule's own secret wins. Checked, with the receiver's independent
# (Python hmac) Standard Webhooks verification:
#   1. one request per sent webhook delivery, each validly signed, webhook-id
#      = the delivery's idempotency key (nudge-<id>), webhook-timestamp = the
#      daemon's clock, the JSON body the delivery's payload without the
#      backend-only "_secret_file";
#   2. one generic-provider SMS request per sent sms delivery, the number in
#      E.164 (default_country_code 86), a segment count, the Idempotency-Key;
#      a customer with an impossible number ends dead with "invalid phone
#      number" and no request;
#   3. advancing again sends nothing more (at most once).
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 40-webhook-sms

RULE_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
CHANNEL_SECRET=whsec_c2Vjb25kLXNlY3JldC1mb3ItdGhlLWNoYW5uZWw=
log=$E2E_TMP/requests.jsonl

# ---- the receiver ---------------------------------------------------------
"$PY" "$NUDGE_SRC/tests/http/receiver.py" --port 0 --log "$log" \
	--webhook-secret "$RULE_SECRET" >"$E2E_TMP/receiver.out" 2>"$E2E_TMP/receiver.err" &
E2E_PIDS+=($!)
port=
for _ in $(seq 1 100); do
	port=$(head -n1 "$E2E_TMP/receiver.out" 2>/dev/null)
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || die "receiver.py did not report its port: $(cat "$E2E_TMP/receiver.err")"

# ---- rules: shipped files, webhook URL and secret rewritten in a copy -------
rules=$E2E_TMP/rules
mkdir -p "$rules"
cp "$NUDGE_SRC"/rules/winback.* "$NUDGE_SRC"/rules/spring-festival.yaml "$rules/"
sed -i -e "s|http://127.0.0.1:8080/hooks/winback\"|http://127.0.0.1:$port/hooks/winback\", secret_file: hook.secret|" \
	"$rules/winback.yaml"
grep -q "127.0.0.1:$port/hooks/winback\", secret_file: hook.secret" "$rules/winback.yaml" ||
	die "could not rewrite the webhook URL of rules/winback.yaml (did it change?)"
printf '%s\n' "$RULE_SECRET" >"$rules/hook.secret"
printf '%s\n' "$CHANNEL_SECRET" >"$E2E_TMP/channel.secret"

inst=$E2E_TMP/inst
mkdir -p "$inst"
config_head "$inst" "$rules" Asia/Shanghai >"$inst/nudge.yaml"
cat >>"$inst/nudge.yaml" <<YAML
channels:
  email: { transport: spool, from: "Shop <shop@example.com>" }
  webhook:
    transport: http
    timeout: 5
    max_connections: 4
    secret_file: $E2E_TMP/channel.secret
  sms:
    transport: http
    provider: generic
    url: "http://127.0.0.1:$port/sms/send?ref={{id}}"
    default_country_code: 86
    body_format: json
    body: { to: "{{to}}", text: "{{text}}", parts: "{{segments}}" }
    success: { status: [200, 202], json_field: status, json_value: ok }
YAML

# W1, W2 lapsed (last order > 90 days before 2027-02-01): win-back email +
# webhook. W2, S1 (top tiers, SMS consent): the Spring Festival SMS
# (2027-02-03 10:00 Shanghai). S2's number cannot exist. R1 ordered recently.
cat >"$E2E_TMP/customers.csv" <<'CSV'
id,name,first_name,email,phone,tz,tier,consent_email,consent_sms
W1,Wendy Wu,Wendy,wendy@example.com,,Asia/Shanghai,normal,yes,no
W2,王芳,芳,wang.fang@example.com,139-1234-5678,Asia/Shanghai,high-value,yes,yes
S1,李雷,雷,,+86 138 0013 8000,Asia/Shanghai,potential,no,yes
S2,Bad Number,Bad,,12345,Asia/Shanghai,potential,no,yes
R1,Recent Buyer,Rita,rita@example.com,,Asia/Shanghai,normal,yes,no
CSV
cat >"$E2E_TMP/orders.csv" <<'CSV'
customer_id,order_id,amount,currency,ordered_at
W1,O-1,50,CNY,2026-09-01
W2,O-2,80,CNY,2026-10-01
R1,O-3,20,CNY,2027-01-20
CSV

start_daemon "$inst" 2027-02-01T00:00:00Z
run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
check_rc "import customers" 0 "$RC"
run_cmd ctl "$inst" import orders "$E2E_TMP/orders.csv"
check_rc "import orders" 0 "$RC"
run_cmd ctl "$inst" advance --to 2027-02-04T00:00:00Z
check_rc "advance to 2027-02-04" 0 "$RC"

# ---- 1. webhooks ------------------------------------------------------------
sent_hooks=$(sql "$inst" "SELECT count(*) FROM deliveries WHERE channel = 'webhook' AND state = 'sent'")
check_eq "two win-back webhooks sent (W1, W2)" 2 "$sent_hooks"
sql "$inst" "SELECT id, sent_at FROM deliveries WHERE channel = 'webhook' AND state = 'sent'" \
	>"$E2E_TMP/hooks.sent"
OUT=$("$PY" - "$log" "$E2E_TMP/hooks.sent" <<'PY' 2>&1
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
hooks = [r for r in reqs if r["path"] == "/hooks/winback"]
sent = {}
for line in open(sys.argv[2]):
    i, at = line.strip().split("|")
    sent["nudge-%s" % i] = at
problems = []
ids = [r["headers"].get("webhook-id") for r in hooks]
if sorted(ids) != sorted(sent):
    problems.append("webhook-ids %s, sent deliveries %s" % (sorted(ids), sorted(sent)))
for r in hooks:
    h, wid = r["headers"], r["headers"].get("webhook-id")
    if r["method"] != "POST" or not h.get("content-type", "").startswith("application/json"):
        problems.append("%s: %s %s" % (wid, r["method"], h.get("content-type")))
    if r.get("signature_valid") is not True:
        problems.append("%s: signature not valid for the rule's secret" % wid)
    if wid in sent and h.get("webhook-timestamp") != sent[wid]:
        problems.append("%s: timestamp %s, sent_at %s" % (wid, h.get("webhook-timestamp"), sent[wid]))
    body = r["json"] or {}
    if any(k.startswith("_") for k in body):
        problems.append("%s: backend-only keys in the body: %s" % (wid, sorted(body)))
    if body.get("rule") != "winback-coupon" or body.get("idempotency_key") != wid:
        problems.append("%s: body rule/idempotency_key %s/%s" % (wid, body.get("rule"), body.get("idempotency_key")))
    if not (body.get("coupon") or {}).get("code", "").startswith("BACK"):
        problems.append("%s: no BACK coupon in the body" % wid)
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("%d webhook requests, all signed and matching" % len(hooks))
PY
)
check_rc "webhook requests: one per delivery, signed with the rule's secret, stable ids ($OUT)" 0 $?

# ---- 2. SMS -------------------------------------------------------------------
sent_sms=$(sql "$inst" "SELECT count(*) FROM deliveries WHERE channel = 'sms' AND state = 'sent'")
check_eq "two Spring Festival SMS sent (W2, S1)" 2 "$sent_sms"
dead=$(sql "$inst" "SELECT d.state || ' ' || d.last_error FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE c.ext_id = 'S2' AND d.channel = 'sms'")
check_contains "the impossible number is dead with its reason" "$dead" "dead invalid phone number"
sql "$inst" "SELECT id FROM deliveries WHERE channel = 'sms' AND state = 'sent'" >"$E2E_TMP/sms.sent"
OUT=$("$PY" - "$log" "$E2E_TMP/sms.sent" <<'PY' 2>&1
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
sms = [r for r in reqs if r["path"] == "/sms/send"]
sent = {"nudge-%s" % l.strip() for l in open(sys.argv[2]) if l.strip()}
problems = []
keys = [r["headers"].get("idempotency-key") for r in sms]
if sorted(keys) != sorted(sent):
    problems.append("Idempotency-Keys %s, sent deliveries %s" % (sorted(keys), sorted(sent)))
tos = sorted((r["json"] or {}).get("to") for r in sms)
if tos != ["+8613800138000", "+8613912345678"]:
    problems.append("numbers %s" % tos)
for r in sms:
    body, key = r["json"] or {}, r["headers"].get("idempotency-key")
    if r["query"] != "ref=" + (key or ""):
        problems.append("%s: query %s" % (key, r["query"]))
    if "新春快乐" not in body.get("text", ""):
        problems.append("%s: text %r" % (key, body.get("text")))
    if not body.get("parts", "").isdigit() or int(body["parts"]) < 1:
        problems.append("%s: parts %r" % (key, body.get("parts")))
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("%d SMS requests, E.164 numbers, one per delivery" % len(sms))
PY
)
check_rc "SMS requests: one per delivery, E.164, idempotency key ($OUT)" 0 $?

# ---- 3. at most once -------------------------------------------------------------
before=$(wc -l <"$log")
run_cmd ctl "$inst" advance --to 2027-02-10T00:00:00Z
check_rc "advance a week further" 0 "$RC"
check_eq "no request repeated or added" "$before" "$(wc -l <"$log")"

stop_daemon "$inst"
check_eq "nudged stops cleanly" 0 "$EXIT_STATUS"
e2e_finish
