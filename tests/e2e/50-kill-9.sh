#!/usr/bin/env bash
# 50-kill-9: the crash-safety promise, measured.
#
# "Nothing accepted into deliveries is ever lost: kill -9 at any moment,
# restart, and every pending row is eventually sent; a crash may repeat only
# what was in flight, with the same idempotency key" (DESIGN.md, Delivery
# semantics). Set-up:
#   - a real SMTP server (tests/smtp/count_server.py, aiosmtpd) that fsyncs
#     one record line per message (Message-ID, RCPT) before answering 250,
#     and tests/http/receiver.py for webhooks (signature checked), both on
#     free ports on 127.0.0.1;
#   - one rule (tests/e2e/data/crash/) with an email and a webhook action,
#     and $CUSTOMERS customers who all share a birthday: one fire enqueues
#     2 x $CUSTOMERS deliveries;
#   - nudge.yaml: smtp (starttls no) and http transports, dispatch batch 50,
#     concurrency 4, lease 10s; a frozen clock.
# Rounds (bounded, $KILLS of them): start nudged --now T --frozen, run
# `nudgectl advance` to T+1min in the background, sleep a random 0.2-1.5 s,
# kill -9, and record the rows left in state 'sending' (in flight at the
# kill; a row claimed before an earlier kill and not yet taken again is
# listed again) and the start and kill times. The next round starts at
# T + 1min, where the killed process's claims have not expired: the new
# daemon takes them back at start (one daemon owns the database), so none
# waits for its lease. Then one last daemon
# advances (bounded) until nothing is pending, retrying or sending, and stops
# with SIGTERM. tests/e2e/data/crash/tally.py then counts, per channel,
# received vs distinct keys vs sent deliveries (see its header for every
# check: 0 lost; email duplicates <= concurrency per kill, as each message's
# result is durable before the next one goes out on its session; webhook
# duplicates <= concurrency x max_connections per kill, the requests that can
# be in flight, as each answer is made durable as it arrives) and the
# database passes PRAGMA
# integrity_check. The counts are printed: lost, duplicates, kills.
#
# Environment: NUDGE_CRASH_KILLS (20), NUDGE_CRASH_CUSTOMERS (3000),
# NUDGE_CRASH_SEED (random; printed, so a run can be repeated). E2E_KEEP=1
# keeps the records (smtp.records, webhook.jsonl, inflight.tsv, kills.tsv).
# Note: the dispatcher's slots share libuv's thread pool (4 threads unless
# UV_THREADPOOL_SIZE says otherwise), so at most 4 batches (200 rows) are
# in flight across both channels at a kill.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 50-kill-9

"$PY" -c 'import aiosmtpd' 2>/dev/null ||
	die "python3-aiosmtpd is needed (contrib/install-deps.sh installs it)"

KILLS=${NUDGE_CRASH_KILLS:-20}
CUSTOMERS=${NUDGE_CRASH_CUSTOMERS:-3000}
SEED=${NUDGE_CRASH_SEED:-$(((RANDOM << 15) | RANDOM))}
BATCH=50
HOOK_CONNS=2 # the webhook's requests in flight per session
CONCURRENCY=4
LEASE=10
HOOK_PATH=/hooks/crash
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
RANDOM=$SEED
echo "seed $SEED (NUDGE_CRASH_SEED=$SEED repeats the kill times), $KILLS kills, $CUSTOMERS customers"

data=$E2E_DIR/data/crash
smtp_rec=$E2E_TMP/smtp.records
hook_log=$E2E_TMP/webhook.jsonl
inflight=$E2E_TMP/inflight.tsv
kill_times=$E2E_TMP/kills.tsv
: >"$kill_times"
: >"$smtp_rec"
: >"$hook_log"
: >"$inflight"

# wait_port FILE WHAT: PORT = the first line of FILE (a server's port), polled for 10 s.
wait_port() {
	PORT=
	for _ in $(seq 1 100); do
		PORT=$(head -n1 "$1" 2>/dev/null)
		[ -n "$PORT" ] && return 0
		sleep 0.1
	done
	die "$2 did not report its port: $(cat "${1%.out}.err" 2>/dev/null)"
}

# ---- the receivers ----------------------------------------------------------
"$PY" "$NUDGE_SRC/tests/smtp/count_server.py" --port 0 --record "$smtp_rec" \
	>"$E2E_TMP/smtp.out" 2>"$E2E_TMP/smtp.err" &
E2E_PIDS+=($!)
"$PY" "$NUDGE_SRC/tests/http/receiver.py" --port 0 --log "$hook_log" --webhook-secret "$SECRET" \
	>"$E2E_TMP/hook.out" 2>"$E2E_TMP/hook.err" &
E2E_PIDS+=($!)
wait_port "$E2E_TMP/smtp.out" "count_server.py"
smtp_port=$PORT
wait_port "$E2E_TMP/hook.out" "receiver.py"
hook_port=$PORT

# ---- rules, customers, configuration ------------------------------------------
rules=$E2E_TMP/rules
mkdir -p "$rules"
cp "$data"/crash-greeting.subject "$data"/crash-greeting.txt "$rules/"
sed "s|@WEBHOOK_URL@|http://127.0.0.1:$hook_port$HOOK_PATH|" "$data/crash-greeting.yaml.in" \
	>"$rules/crash-greeting.yaml"
printf '%s\n' "$SECRET" >"$E2E_TMP/hook.secret"

{
	echo "id,name,first_name,email,birthday,tz,tier,consent_email"
	for i in $(seq -w 1 "$CUSTOMERS"); do
		echo "K$i,Crash $i,C$i,k$i@example.com,1990-03-10,UTC,normal,yes"
	done
} >"$E2E_TMP/customers.csv"

inst=$E2E_TMP/inst
mkdir -p "$inst"
config_head "$inst" "$rules" UTC >"$inst/nudge.yaml"
cat >>"$inst/nudge.yaml" <<YAML
catch_up: 24h
dispatch: { batch: $BATCH, concurrency: $CONCURRENCY, lease: ${LEASE}s }
channels:
  email:
    transport: smtp
    host: 127.0.0.1
    port: $smtp_port
    starttls: "no"
    timeout: 30
    from: "Shop <shop@example.com>"
  webhook:
    transport: http
    timeout: 10
    max_connections: $HOOK_CONNS
    secret_file: $E2E_TMP/hook.secret
YAML

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
# counts_line: the deliveries by state, one line.
counts_line() {
	sql "$inst" "SELECT group_concat(state || ' ' || n, ', ') FROM
	             (SELECT state, count(*) AS n FROM deliveries GROUP BY state ORDER BY state)"
}

# The rule is evaluated for the first time at 08:00 (a new rule starts now),
# so the 09:00 fire is due on every later start, within catch_up.
t=$(date -u -d 2027-03-10T08:00:00Z +%s)
start_daemon "$inst" "$(iso "$t")"
run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
check_rc "import $CUSTOMERS customers sharing the birthday 03-10" 0 "$RC"
stop_daemon "$inst"
check_eq "the set-up daemon stops cleanly" 0 "$EXIT_STATUS"

# ---- kill -9 rounds -----------------------------------------------------------------
started=$SECONDS
t=$(date -u -d 2027-03-10T08:59:00Z +%s)
kills=0
prev_flight=0
took_back_ok=0
for round in $(seq 1 "$KILLS"); do
	log_lines=$(wc -l <"$inst/nudged.log")
	start_daemon "$inst" "$(iso "$t")"
	# The rows the last kill left in 'sending' came back at start, at once:
	# those the sessions' sent journals name were recorded sent, the rest
	# were taken back (made due again).
	if [ "$prev_flight" -gt 0 ]; then
		newlog=$(tail -n +$((log_lines + 1)) "$inst/nudged.log")
		n_back=$(printf '%s\n' "$newlog" | sed -n 's/.*took back \([0-9]*\) deliver.*/\1/p' | head -n1)
		n_jour=$(printf '%s\n' "$newlog" | sed -n 's/.*recorded \([0-9]*\) deliver.* as sent from the sent journals.*/\1/p' | head -n1)
		echo "round $round: start: $prev_flight left in flight = ${n_jour:-0} recorded sent from the journals + ${n_back:-0} taken back"
		if [ $((${n_back:-0} + ${n_jour:-0})) -eq "$prev_flight" ]; then
			took_back_ok=$((took_back_ok + 1))
		else
			fail "round $round: the start settled ${n_jour:-0} + ${n_back:-0} of the $prev_flight rows left in flight"
		fi
	fi
	up=$(date +%s.%N)
	ctl "$inst" advance --to "$(iso $((t + 60)))" >"$E2E_TMP/advance.$round" 2>&1 &
	adv=$!
	ms=$((200 + RANDOM % 1301))
	sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
	killed=$(date +%s.%N)
	kill9_daemon "$inst"
	kills=$((kills + 1))
	printf '%s\t%s\t%s\n' "$round" "$up" "$killed" >>"$kill_times"
	wait_exit "$adv" 10 || { kill -KILL "$adv" 2>/dev/null; wait "$adv" 2>/dev/null; }
	sql "$inst" "SELECT $round, id FROM deliveries WHERE state = 'sending'" | tr '|' '\t' >>"$inflight"
	n_flight=$(sql "$inst" "SELECT count(*) FROM deliveries WHERE state = 'sending'")
	note=
	[ "$EXIT_STATUS" = 0 ] && note=" (advance had finished: the kill hit an idle daemon)"
	echo "round $round: clock $(iso "$t"), killed after ${ms} ms, $n_flight in flight; $(counts_line)$note"
	# The next daemon starts where this advance was going, inside the killed
	# process's leases: its claims come back by take-back at start.
	t=$((t + 60))
	prev_flight=$n_flight
done

echo "$took_back_ok restarts took back the rows the previous kill left in flight"
n_hit=$(grep -c . "$inflight")
check_true "the kills hit deliveries in flight ($n_hit rows in state 'sending' over $kills kills)" \
	test "$n_hit" -gt 0

# ---- recovery: advance (bounded) until nothing is left to send ---------------------------
start_daemon "$inst" "$(iso "$t")"
left=
for attempt in $(seq 1 8); do
	t=$((t + 6 * 3600))
	run_cmd ctl "$inst" advance --to "$(iso "$t")"
	[ "$RC" = 0 ] || echo "note: advance to $(iso "$t") failed: $ERR"
	left=$(sql "$inst" "SELECT count(*) FROM deliveries WHERE state IN ('pending', 'retry', 'sending')")
	echo "recovery advance $attempt to $(iso "$t"): $left unsettled; $(counts_line)"
	[ "$left" = 0 ] && break
done
check_eq "the restarted daemon settles every delivery (bounded advances)" 0 "$left"
[ "$left" = 0 ] || queue_report "$inst"
stop_daemon "$inst" 30
check_eq "the last daemon stops cleanly after $kills kills" 0 "$EXIT_STATUS"
check_log_clean "$inst"
echo "kill rounds and recovery took $((SECONDS - started)) s"

check_eq "the database passes PRAGMA integrity_check" ok \
	"$(sql "$inst" "PRAGMA integrity_check" 2>&1 | head -5)"

# ---- the tally ------------------------------------------------------------------------
admin_results < <("$PY" "$data/tally.py" --db "$inst/nudge.db" --smtp "$smtp_rec" \
	--webhook "$hook_log" --inflight "$inflight" --kill-times "$kill_times" --kills "$kills" \
	--batch "$BATCH" --concurrency "$CONCURRENCY" --max-connections "$HOOK_CONNS" --expected $((2 * CUSTOMERS)) \
	--hook-path "$HOOK_PATH" --summary "$E2E_TMP/summary" 2>&1)
[ -s "$E2E_TMP/summary" ] && cat "$E2E_TMP/summary"
e2e_finish
