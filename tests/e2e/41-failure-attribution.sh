#!/usr/bin/env bash
# 41-failure-attribution: who is to blame for a failure, against real servers.
#
# SMTP (tests/smtp/reject_server.py, aiosmtpd):
#   1. the server refuses our MAIL FROM (550 5.7.1): every delivery waits in
#      retry, nobody is suppressed or dead, the email channel is paused with
#      the reason in `nudgectl status --json` and nudge_channel_paused 1 in
#      /metrics; when the pause runs out one probe goes and pauses it again
#      (longer); `nudgectl reload` resumes it;
#   2. a wrong AUTH password (535): the same;
#   3. RCPT refused with 550 5.1.1 for one recipient: that delivery is dead
#      and only that address is suppressed; the others are sent, no pause.
# HTTP (tests/http/receiver.py), SMS on the generic provider routed by number:
#   4. 500 and 429 with Retry-After: retry (the 429 no sooner than asked),
#      nobody suppressed; 410 from a webhook endpoint: dead, recipient's fault;
#   5. 401 from the provider: retry, the sms channel paused, nobody suppressed.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 41-failure-attribution
command -v curl >/dev/null || die "curl is needed"

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_smtp NAME ARGS...: a reject_server.py; sets SMTP_PORT.
start_smtp() {
	local name=$1
	shift
	"$PY" "$NUDGE_SRC/tests/smtp/reject_server.py" --port 0 --record "$E2E_TMP/$name.record" "$@" \
		>"$E2E_TMP/$name.out" 2>"$E2E_TMP/$name.err" &
	E2E_PIDS+=($!)
	SMTP_PORT=
	for _ in $(seq 1 100); do
		SMTP_PORT=$(head -n1 "$E2E_TMP/$name.out" 2>/dev/null)
		[ -n "$SMTP_PORT" ] && break
		sleep 0.1
	done
	[ -n "$SMTP_PORT" ] || die "reject_server.py did not start: $(cat "$E2E_TMP/$name.err")"
}

rules=$E2E_TMP/rules
mkdir -p "$rules"
cp "$NUDGE_SRC"/rules/birthday.* "$rules/"
cat >"$E2E_TMP/customers.csv" <<'CSV'
id,name,first_name,email,birthday,tz,tier,consent_email
c1,Ann A,Ann,ann@example.com,1990-01-15,Asia/Shanghai,normal,yes
c2,Bob B,Bob,bob@example.com,1985-01-15,Asia/Shanghai,normal,yes
c3,Una Known,Una,unknown1@example.com,1992-01-15,Asia/Shanghai,normal,yes
CSV

# email_instance NAME SMTP_PORT EXTRA: an instance whose email goes over smtp.
email_instance() {
	local inst=$E2E_TMP/$1
	mkdir -p "$inst"
	config_head "$inst" "$rules" Asia/Shanghai >"$inst/nudge.yaml"
	cat >>"$inst/nudge.yaml" <<YAML
http: { listen: "127.0.0.1:$4" }
channels:
  email:
    transport: smtp
    host: 127.0.0.1
    port: $2
    starttls: "no"
    timeout: 10
$3
YAML
	start_daemon "$inst" 2027-01-14T12:00:00Z
	run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
	check_rc "$1: import customers" 0 "$RC"
	run_cmd ctl "$inst" advance --to 2027-01-15T02:00:00Z
	check_rc "$1: advance to the birthdays" 0 "$RC"
}

# sender_fault_checks NAME HTTP_PORT REASON: what a sender fault must leave.
sender_fault_checks() {
	local name=$1 inst=$E2E_TMP/$1 st reason metrics
	check_eq "$name: every delivery waits in retry" "3" \
		"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE channel = 'email' AND state = 'retry'")"
	check_eq "$name: nothing dead" "0" "$(sql "$inst" "SELECT count(*) FROM deliveries WHERE state = 'dead'")"
	check_eq "$name: nobody suppressed" "0" "$(sql "$inst" "SELECT count(*) FROM suppressions")"
	st=$(ctl_json "$inst" status)
	check_eq "$name: status says email is paused" "true" "$(jq_get "$st" '.channels.email.paused')"
	reason=$(jq_get "$st" '.channels.email.reason')
	check_contains "$name: status gives the reason" "$reason" "$3"
	metrics=$(curl -s "http://127.0.0.1:$2/metrics")
	check_contains "$name: /metrics shows the pause" "$metrics" 'nudge_channel_paused{channel="email"} 1'
	check_match "$name: the log explains the pause" "$(cat "$inst/nudged.log")" \
		"channel email paused until .*Nobody was suppressed"
	run_cmd ctl "$inst" status
	check_contains "$name: nudgectl status shows PAUSED" "$OUT" "PAUSED"
	# Each time the pause runs out, one probe message goes, is refused
	# again and pauses the channel longer: every attempt after the first
	# batch's three is a probe.
	local before after extra
	before=$(jq_get "$st" '.channels.email.pauses')
	run_cmd ctl "$inst" advance --to 2027-01-15T04:00:00Z
	st=$(ctl_json "$inst" status)
	after=$(jq_get "$st" '.channels.email.pauses')
	check_true "$name: probes pause again ($before then $after pauses)" test "$after" -gt "$before"
	extra=$(sql "$inst" "SELECT sum(attempts) - 3 FROM deliveries")
	check_eq "$name: one message per probe" "$((after - 1))" "$extra"
	check_eq "$name: still paused after the probes" "true" "$(jq_get "$st" '.channels.email.paused')"
	check_eq "$name: still nobody suppressed" "0" "$(sql "$inst" "SELECT count(*) FROM suppressions")"
	run_cmd ctl "$inst" reload
	st=$(ctl_json "$inst" status)
	check_eq "$name: reload resumes the channel" "false" "$(jq_get "$st" '.channels.email.paused')"
	check_contains "$name: /metrics after resume" "$(curl -s "http://127.0.0.1:$2/metrics")" \
		'nudge_channel_paused{channel="email"} 0'
	check_log_clean "$inst"
	stop_daemon "$inst"
}

# ---- 1. MAIL FROM refused ------------------------------------------------------
start_smtp plain
plain_port=$SMTP_PORT
hp=$(free_port)
email_instance mailfrom "$plain_port" '    from: "Shop <rejected@example.com>"' "$hp"
sender_fault_checks mailfrom "$hp" "MAIL FROM rejected: 550"

# ---- 2. wrong AUTH password -------------------------------------------------------
start_smtp auth --user shop --password right
hp=$(free_port)
email_instance auth "$SMTP_PORT" '    from: "Shop <shop@example.com>"
    username: shop
    password: wrong' "$hp"
sender_fault_checks auth "$hp" "authentication as shop failed: 535"
check_eq "auth: the server accepted nothing" "0" "$(cat "$E2E_TMP/auth.record" 2>/dev/null | wc -l)"

# ---- 3. an unknown recipient ------------------------------------------------------
hp=$(free_port)
email_instance rcpt "$plain_port" '    from: "Shop <shop@example.com>"' "$hp"
inst=$E2E_TMP/rcpt
check_eq "rcpt: two sent" "2" "$(sql "$inst" "SELECT count(*) FROM deliveries WHERE state = 'sent'")"
check_eq "rcpt: the unknown mailbox is dead" "dead" \
	"$(sql "$inst" "SELECT d.state FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE c.email = 'unknown1@example.com'")"
check_eq "rcpt: only that address is suppressed" "email|unknown1@example.com" \
	"$(sql "$inst" "SELECT channel, address FROM suppressions")"
check_eq "rcpt: email not paused" "false" "$(jq_get "$(ctl_json "$inst" status)" '.channels.email.paused')"
check_contains "rcpt: /metrics" "$(curl -s "http://127.0.0.1:$hp/metrics")" 'nudge_channel_paused{channel="email"} 0'
check_log_clean "$inst"
stop_daemon "$inst"

# ---- 4, 5. HTTP ---------------------------------------------------------------------
log=$E2E_TMP/requests.jsonl
"$PY" "$NUDGE_SRC/tests/http/receiver.py" --port 0 --log "$log" \
	--route '/sms/%2B8613900000500={"status": 500}' \
	--route '/sms/%2B8613900000429={"status": 429, "retry_after": "7200"}' \
	--route '/hooks/gone={"status": 410}' \
	>"$E2E_TMP/receiver.out" 2>"$E2E_TMP/receiver.err" &
E2E_PIDS+=($!)
port=
for _ in $(seq 1 100); do
	port=$(head -n1 "$E2E_TMP/receiver.out" 2>/dev/null)
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || die "receiver.py did not report its port: $(cat "$E2E_TMP/receiver.err")"
"$PY" "$NUDGE_SRC/tests/http/receiver.py" --port 0 --log "$E2E_TMP/auth.jsonl" \
	--route '/={"status": 401, "body": {"error": "bad token"}}' \
	>"$E2E_TMP/receiver2.out" 2>"$E2E_TMP/receiver2.err" &
E2E_PIDS+=($!)
port401=
for _ in $(seq 1 100); do
	port401=$(head -n1 "$E2E_TMP/receiver2.out" 2>/dev/null)
	[ -n "$port401" ] && break
	sleep 0.1
done
[ -n "$port401" ] || die "the second receiver.py did not report its port"

hrules=$E2E_TMP/hrules
mkdir -p "$hrules"
cp "$NUDGE_SRC"/rules/winback.* "$NUDGE_SRC"/rules/spring-festival.yaml "$hrules/"
sed -i -e "s|http://127.0.0.1:8080/hooks/winback|http://127.0.0.1:$port/hooks/gone|" "$hrules/winback.yaml"
cat >"$E2E_TMP/hcustomers.csv" <<'CSV'
id,name,first_name,email,phone,tz,tier,consent_email,consent_sms
W1,Wendy Wu,Wendy,wendy@example.com,,Asia/Shanghai,normal,yes,no
S1,Five Hundred,Five,,+86 139 0000 0500,Asia/Shanghai,potential,no,yes
S2,Four Twenty-Nine,Four,,+86 139 0000 0429,Asia/Shanghai,potential,no,yes
CSV
cat >"$E2E_TMP/horders.csv" <<'CSV'
customer_id,order_id,amount,currency,ordered_at
W1,O-1,50,CNY,2026-09-01
CSV
# http_instance NAME SMS_URL
http_instance() {
	local inst=$E2E_TMP/$1
	mkdir -p "$inst"
	config_head "$inst" "$hrules" Asia/Shanghai >"$inst/nudge.yaml"
	cat >>"$inst/nudge.yaml" <<YAML
http: { listen: "127.0.0.1:$3" }
channels:
  email: { transport: spool, from: "Shop <shop@example.com>" }
  webhook: { transport: http, timeout: 5 }
  sms:
    transport: http
    provider: generic
    url: "$2"
    default_country_code: 86
YAML
	start_daemon "$inst" 2027-02-01T00:00:00Z
	ctl "$inst" import customers "$E2E_TMP/hcustomers.csv" >/dev/null
	ctl "$inst" import orders "$E2E_TMP/horders.csv" >/dev/null
	run_cmd ctl "$inst" advance --to 2027-02-04T00:00:00Z
	check_rc "$1: advance past the fires" 0 "$RC"
}

hp=$(free_port)
http_instance http "http://127.0.0.1:$port/sms/{{to}}" "$hp"
inst=$E2E_TMP/http
check_eq "http: the gone webhook is dead" "dead" \
	"$(sql "$inst" "SELECT state FROM deliveries WHERE channel = 'webhook'")"
check_match "http: ... as the recipient's fault" "$(cat "$inst/nudged.log")" "permanent failure \(recipient's fault\): HTTP 410"
check_eq "http: 500 and 429 wait in retry" "2" \
	"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE channel = 'sms' AND state = 'retry'")"
check_contains "http: the 429's Retry-After is honoured" \
	"$(sql "$inst" "SELECT last_error FROM deliveries WHERE customer_id = (SELECT id FROM customers WHERE ext_id = 'S2') AND channel = 'sms'")" \
	"(retry after 7200 s)"
check_eq "http: nobody suppressed" "0" "$(sql "$inst" "SELECT count(*) FROM suppressions")"
st=$(ctl_json "$inst" status)
check_eq "http: sms not paused by 429/500" "false" "$(jq_get "$st" '.channels.sms.paused')"
check_eq "http: webhook not paused by 410" "false" "$(jq_get "$st" '.channels.webhook.paused')"
check_log_clean "$inst"
stop_daemon "$inst"

hp=$(free_port)
http_instance http401 "http://127.0.0.1:$port401/sms" "$hp"
inst=$E2E_TMP/http401
check_eq "http401: both SMS wait in retry" "2" \
	"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE channel = 'sms' AND state = 'retry'")"
check_eq "http401: nobody suppressed" "0" "$(sql "$inst" "SELECT count(*) FROM suppressions")"
st=$(ctl_json "$inst" status)
check_eq "http401: sms paused" "true" "$(jq_get "$st" '.channels.sms.paused')"
check_contains "http401: the reason" "$(jq_get "$st" '.channels.sms.reason')" "HTTP 401"
check_contains "http401: /metrics" "$(curl -s "http://127.0.0.1:$hp/metrics")" 'nudge_channel_paused{channel="sms"} 1'
check_contains "http401: webhook unaffected" "$(curl -s "http://127.0.0.1:$hp/metrics")" 'nudge_channel_paused{channel="webhook"} 0'
check_log_clean "$inst"
stop_daemon "$inst"

e2e_finish
