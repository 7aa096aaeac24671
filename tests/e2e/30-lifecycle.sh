#!/usr/bin/env bash
# 30-lifecycle: nudged starts, checks its configuration, answers, and stops
# cleanly, including in the middle of work.
#
# Proves:
#   1. `nudged --check -c good.yaml` prints "configuration OK" and exits 0;
#      broken nudge.yaml files (YAML syntax, unknown key, bad zone, bad
#      duration, an unclosed flow sequence at the end of the file) and a
#      broken rule exit 1 with FILE:LINE:COL, the source line and a caret;
#      a channel's transport settings (task notify, spool) are checked too,
#      at the channel's line, and nothing (database, spool) is created; a
#      spool directory that cannot be created fails the check, and a bad
#      per-channel limit stops start-up with its reason (exit 1).
#   2. --help and --version of nudged and nudgectl, and `nudgectl COMMAND
#      --help`, exit 0 without a daemon; usage errors exit 2.
#   3. A running daemon's admin socket has mode 0660; `nudgectl status --json`
#      (and `nudgectl --json status`) print exactly one JSON document.
#   4. SIGTERM on an idle daemon: exit status 0 within 5 s, socket removed.
#   5. SIGTERM while a batch of thousands of spool deliveries is being
#      dispatched (3,000 demo customers): exit 0 within 5 s, socket removed,
#      no row left in state 'sending' (every row pending, retry or sent), and
#      after a restart and an advance every row is sent with exactly one
#      spool file per delivery id. The advance that was cut short does not
#      report success.
#   6. SIGTERM while the evaluator is catching up (no dispatch batch running):
#      exit 0 within 5 s.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 30-lifecycle

rules=$NUDGE_SRC/rules

# ---- 1. --check ---------------------------------------------------------------
good=$E2E_TMP/good
make_instance "$good" "$rules"
run_cmd "$NUDGED" --check -c "$good/nudge.yaml"
check_rc "nudged --check on a good nudge.yaml" 0 "$RC"
check_contains "nudged --check says 'configuration OK'" "$OUT" "configuration OK"
[ ! -e "$good/nudge.sock" ] && [ ! -e "$good/nudge.db" ] && [ ! -e "$good/spool" ]
check_rc "nudged --check neither listens nor creates the database or the spool" 0 $?

# Channel settings are checked by their own transports, as at start-up, and
# reported at the channel's line of nudge.yaml; still nothing is created.
chk=$E2E_TMP/chk
make_instance "$chk" "$rules" UTC "  # the assignees' notices
"
sed -i 's|^  task: { transport: task, staff: \[alice, bob\] }$|  task: { transport: task, staff: [alice, bob], notify: { emial: { alice: alice@example.com } } }|' \
	"$chk/nudge.yaml"
task_line=$(grep -n '^  task:' "$chk/nudge.yaml" | cut -d: -f1)
run_cmd "$NUDGED" --check -c "$chk/nudge.yaml"
check_rc "--check rejects a misspelt key in channels.task.notify" 1 "$RC"
check_contains "--check names the channel's line for a transport setting" "$ERR" \
	"$chk/nudge.yaml:$task_line:"
check_contains "--check says which key is wrong" "$ERR" "unknown key 'emial' in channels.task.notify"
check_contains "--check suggests the right key" "$ERR" "did you mean 'email'"
sed -i 's|notify: { emial: { alice: alice@example.com } }|notify: { email: { alice: alice@example.com }, webhook: { url: "ftp://crm.example/x" } }|' \
	"$chk/nudge.yaml"
run_cmd "$NUDGED" --check -c "$chk/nudge.yaml"
check_rc "--check rejects a notify webhook without an http(s) url" 1 "$RC"
check_contains "--check explains the notify webhook url" "$ERR" "needs a url (http:// or https://)"
sed -i 's|, webhook: { url: "ftp://crm.example/x" }||; s|^  sms: { transport: spool }$|  sms: { transport: spool, colour: blue }|' \
	"$chk/nudge.yaml"
run_cmd "$NUDGED" --check -c "$chk/nudge.yaml"
check_rc "--check rejects an unknown spool setting" 1 "$RC"
check_contains "--check names the spool setting" "$ERR" "unknown setting 'colour' for the spool transport of sms"
sed -i 's|, colour: blue||' "$chk/nudge.yaml"
run_cmd "$NUDGED" --check -c "$chk/nudge.yaml"
check_rc "--check accepts the mended channels" 0 "$RC"
[ ! -e "$chk/nudge.db" ] && [ ! -e "$chk/spool" ]
check_rc "--check of channels creates neither the database nor the spool" 0 $?
# A spool directory that could not be created (a file where a directory must
# be) fails the check as it would fail start-up.
: >"$chk/notadir"
sed -i "s|^  webhook: { transport: spool }\$|  webhook: { transport: spool, dir: $chk/notadir/webhook }|" "$chk/nudge.yaml"
run_cmd "$NUDGED" --check -c "$chk/nudge.yaml"
check_rc "--check rejects a spool directory under a file" 1 "$RC"
check_contains "--check says the spool directory cannot be created" "$ERR" \
	"cannot create spool directory $chk/notadir/webhook: Not a directory"
sed -i "s|, dir: $chk/notadir/webhook||" "$chk/nudge.yaml"
# A bad per-channel dispatch limit stops start-up with the reason, cleanly.
sed -i 's|^  sms: { transport: spool }$|  sms: { transport: spool, batch: 0 }|' "$chk/nudge.yaml"
run_cmd timeout 20 "$NUDGED" -c "$chk/nudge.yaml" --now 2027-01-01T00:00:00Z --frozen
check_rc "nudged refuses to start with channels.sms.batch 0 (exit 1, no crash)" 1 "$RC"
check_contains "nudged says which limit is wrong" "$ERR" "channels.sms.batch must be 1 to 10000"
check_not_contains "nudged's refusal is not a crash" "$ERR" "Sanitizer"
check_not_contains "nudged's refusal does no undefined behaviour" "$ERR" "runtime error"
sed -i 's|, batch: 0||' "$chk/nudge.yaml"

# bad_config NAME LINES CONTENT: --check must exit 1 and locate the mistake
# as NAME.yaml:LINE:COL (LINES: an ERE such as 3 or 2|3) with the source
# line and a caret under it.
bad_config() {
	local name=$1 line=$2 f=$E2E_TMP/bad/$1.yaml
	mkdir -p "$E2E_TMP/bad"
	printf '%s' "$3" >"$f"
	run_cmd "$NUDGED" --check -c "$f"
	check_rc "--check rejects $name" 1 "$RC"
	check_contains "--check names the file of the $name error" "$ERR" "$f:"
	check_match "--check gives the line ($line) and column of the $name error" "$ERR" \
		":($line):[0-9]+: error: "
	if has_caret_line "$ERR"; then
		pass "--check shows the source line and a caret for $name"
	else
		fail "--check shows the source line and a caret for $name" "(stderr was:)"
		printf '%s\n' "$ERR" | sed 's/^/    | /' >&2
	fi
	check_not_contains "--check on $name does not say OK" "$OUT" "configuration OK"
}
bad_config yaml-syntax 3 "database: $E2E_TMP/bad/x.db
rules: $rules
  timezone: UTC
"
bad_config unknown-key 2 "database: $E2E_TMP/bad/x.db
admin_sockett: $E2E_TMP/bad/x.sock
"
bad_config bad-zone 3 "database: $E2E_TMP/bad/x.db
rules: $rules
timezone: Mars/Olympus
"
bad_config bad-duration 2 "database: $E2E_TMP/bad/x.db
catch_up: soon
"
# The parser notices at the end of the file; the opening bracket (line 2)
# is where the fix goes, but the end is acceptable if it is shown.
bad_config unclosed-flow '2|3' "database: $E2E_TMP/bad/x.db
rules: [$rules
"
check_contains "the unknown key gets a suggestion" \
	"$("$NUDGED" --check -c "$E2E_TMP/bad/unknown-key.yaml" 2>&1)" "admin_socket"

# A broken rule is reported at its own file, line and column.
mkdir -p "$E2E_TMP/badrules"
cp "$rules"/*.yaml "$rules"/*.txt "$rules"/*.subject "$rules"/*.html "$E2E_TMP/badrules/"
sed -i 's/^audience: email is not null/audience: emale is not null/' "$E2E_TMP/badrules/birthday.yaml"
make_instance "$E2E_TMP/badr" "$E2E_TMP/badrules"
run_cmd "$NUDGED" --check -c "$E2E_TMP/badr/nudge.yaml"
check_rc "--check rejects a rule with an unknown field" 1 "$RC"
check_match "--check locates the rule error as birthday.yaml:LINE:COL" "$ERR" \
	"birthday\.yaml:[0-9]+:[0-9]+: error: .*emale"
has_caret_line "$ERR"
check_rc "--check shows a caret under the rule error" 0 $?

run_cmd "$NUDGED" --check -c "$E2E_TMP/does-not-exist.yaml"
check_rc "--check on a missing file" 1 "$RC"
check_contains "--check names the missing file" "$ERR" "does-not-exist.yaml"

# ---- 2. help and version ------------------------------------------------------
run_cmd "$NUDGED" --help
check_rc "nudged --help" 0 "$RC"
check_contains "nudged --help shows the usage" "$OUT" "Usage: nudged"
check_contains "nudged --help documents --frozen" "$OUT" "--frozen"
run_cmd "$NUDGED" --version
check_rc "nudged --version" 0 "$RC"
check_match "nudged --version prints 'nudged X.Y.Z'" "$OUT" '^nudged [0-9]+\.[0-9]+\.[0-9]+$'
run_cmd "$NUDGECTL" --help
check_rc "nudgectl --help" 0 "$RC"
check_contains "nudgectl --help shows the usage" "$OUT" "Usage: nudgectl"
run_cmd "$NUDGECTL" --version
check_rc "nudgectl --version" 0 "$RC"
check_match "nudgectl --version prints 'nudgectl X.Y.Z'" "$OUT" '^nudgectl [0-9]+\.[0-9]+\.[0-9]+$'
nudged_version=$("$NUDGED" --version | awk '{print $2}')
check_eq "nudged and nudgectl report the same version" "$nudged_version" \
	"$("$NUDGECTL" --version | awk '{print $2}')"
for cmd in status reload rules advance queue retry import preview forecast tasks check render; do
	run_cmd "$NUDGECTL" -s "$E2E_TMP/no-daemon.sock" "$cmd" --help
	check_rc "nudgectl $cmd --help (no daemon needed)" 0 "$RC"
	check_contains "nudgectl $cmd --help documents $cmd" "$OUT" "  $cmd"
done
run_cmd "$NUDGED" --no-such-option
check_rc "nudged with an unknown option is a usage error" 2 "$RC"
run_cmd "$NUDGECTL"
check_rc "nudgectl without a command is a usage error" 2 "$RC"
run_cmd "$NUDGECTL" -s "$E2E_TMP/no-daemon.sock" advance
check_rc "nudgectl advance without --to is a usage error" 2 "$RC"
run_cmd "$NUDGECTL" -s "$E2E_TMP/no-daemon.sock" status
check_rc "nudgectl without a daemon exits 3" 3 "$RC"
check_contains "nudgectl without a daemon names the socket" "$ERR" "no-daemon.sock"
run_cmd "$NUDGED" -c "$good/nudge.yaml" --frozen
check_rc "nudged --frozen without --now is a usage error" 2 "$RC"

# ---- 3. socket mode and status --json ------------------------------------------
start_daemon "$good" 2027-01-01T00:00:00Z
check_eq "the admin socket has mode 0660" 660 "$(stat -c %a "$good/nudge.sock")"

# is_one_json TEXT: exactly one JSON document (an object with ok: true).
# shellcheck disable=SC2317 # called through check_true
is_one_json() {
	"$PY" -c '
import json, sys
text = sys.stdin.read()
doc, end = json.JSONDecoder().raw_decode(text.lstrip())
rest = text.lstrip()[end:].strip()
assert not rest, "text after the JSON document: %r" % rest[:80]
assert isinstance(doc, dict) and doc.get("ok") is True, "not an ok object"
for k in ("now", "ruleset_version", "queue"):
    assert k in doc, "no %s" % k
' <<<"$1"
}
run_cmd ctl "$good" status --json
check_rc "nudgectl status --json" 0 "$RC"
check_true "nudgectl status --json prints one JSON document" is_one_json "$OUT"
run_cmd ctl "$good" --json status
check_rc "nudgectl --json status" 0 "$RC"
check_true "nudgectl --json status prints one JSON document" is_one_json "$OUT"
check_eq "status reports the frozen clock" "2027-01-01T00:00:00Z" "$(jq_get "$OUT" .now)"
run_cmd ctl "$good" status
check_rc "nudgectl status (human)" 0 "$RC"
check_contains "human status shows the frozen clock" "$OUT" "(frozen)"

# ---- 4. SIGTERM when idle ------------------------------------------------------
stop_daemon "$good" 5
check_eq "SIGTERM on an idle daemon: exit 0 within 5 s" 0 "$EXIT_STATUS"
[ ! -e "$good/nudge.sock" ]
check_rc "the socket is removed on exit" 0 $?
check_contains "the log says the daemon stopped" "$(cat "$good/nudged.log")" "stopped"

# ---- 5. SIGTERM during dispatch ---------------------------------------------------
# One care rule (no consent or quiet hours in the way) with two spool
# actions for every customer with a phone, daily at 09:00 local time: three
# days over 3,000 customers are thousands of files, each fsync'd.
busy=$E2E_TMP/busy
mkdir -p "$busy/rules"
cat >"$busy/rules/daily.yaml" <<'YAML'
name: daily-ping
description: Every customer with a phone, every day (a load for the lifecycle test).
category: care
trigger: { daily: { at: "09:00" } }
audience: phone is not null
actions:
  - webhook: { url: "http://127.0.0.1:9/hook" }
  - sms: { text: "Hello {{first_name}}, this is delivery {{delivery_id}}." }
YAML
# catch_up covers the whole test so a restart picks up every missed fire.
make_instance "$busy" "$busy/rules" UTC "catch_up: 7d"
gen_demo "$busy" 3000
start_daemon "$busy" 2027-03-01T00:00:00Z
run_cmd ctl "$busy" import customers "$busy/customers.csv"
check_rc "import 3,000 demo customers" 0 "$RC"
phones=$(sql "$busy" "SELECT count(*) FROM customers WHERE phone IS NOT NULL AND phone <> ''")
expected=$((phones * 3 * 2))
[ "$phones" -gt 1000 ] || die "only $phones demo customers have a phone"

ctl "$busy" advance --to 2027-03-04T00:00:00Z >"$busy/advance.out" 2>&1 &
adv=$!
# Wait (bounded) until the dispatcher is visibly in the middle of its work.
mid=0
for _ in $(seq 1 300); do
	sent=$(sql "$busy" "SELECT count(*) FROM deliveries WHERE state = 'sent'" 2>/dev/null || echo 0)
	if [ "${sent:-0}" -gt 200 ]; then
		mid=1
		break
	fi
	sleep 0.1
done
[ $mid = 1 ] || die "no delivery was sent within 30 s of the advance"
stop_daemon "$busy" 5
check_eq "SIGTERM during dispatch: exit 0 within 5 s" 0 "$EXIT_STATUS"
[ ! -e "$busy/nudge.sock" ]
check_rc "the socket is removed after a stop during dispatch" 0 $?
wait_exit "$adv" 10 || kill "$adv" 2>/dev/null
# The advance was cut short: it must not claim success (exit 0 with the
# clock short of its target would let a script carry on as if it had).
adv_out=$(cat "$busy/advance.out")
if [ "$EXIT_STATUS" = 0 ] && ! grep -q "to 2027-03-04T00:00:00Z" <<<"$adv_out"; then
	fail "an advance cut short by SIGTERM does not report success" "(exit 0 with:)"
	printf '%s\n' "$adv_out" | head -4 | sed 's/^/    | /' >&2
else
	pass "an advance cut short by SIGTERM does not report success (exit $EXIT_STATUS)"
fi
states=$(sql "$busy" "SELECT state || '=' || count(*) FROM deliveries GROUP BY state ORDER BY state" | tr '\n' ' ')
echo "note: after SIGTERM: $states(of $expected in the end)"
sending=$(sql "$busy" "SELECT count(*) FROM deliveries WHERE state = 'sending'")
check_eq "no delivery is left in state 'sending' after SIGTERM" 0 "$sending"
others=$(sql "$busy" "SELECT count(*) FROM deliveries WHERE state NOT IN ('pending', 'retry', 'sent')")
check_eq "every row is pending, retry or sent after SIGTERM" 0 "$others"
unsent=$(sql "$busy" "SELECT count(*) FROM deliveries WHERE state <> 'sent'")
total=$(sql "$busy" "SELECT count(*) FROM deliveries")
if [ "$unsent" -gt 0 ] || [ "$total" -lt "$expected" ]; then
	pass "SIGTERM came in the middle of the work ($unsent unsent, $total of $expected enqueued)"
else
	fail "SIGTERM came in the middle of the work" "(everything was done already; the test proved nothing)"
fi
for ch in webhook sms; do
	out=$(spool_check "$busy" "$ch")
	check_rc "after SIGTERM, $ch: one spool file per sent delivery ($out)" 0 $?
done

# Restart where the clock would have stood and settle: everything goes out.
start_daemon "$busy" 2027-03-04T00:00:00Z
run_cmd ctl "$busy" advance --to 2027-03-04T00:00:00Z
check_rc "advance after the restart" 0 "$RC"
check_eq "after the restart every delivery of the three days exists" "$expected" \
	"$(sql "$busy" "SELECT count(*) FROM deliveries")"
check_eq "after the restart every delivery is sent" "$expected" \
	"$(sql "$busy" "SELECT count(*) FROM deliveries WHERE state = 'sent'")"
if [ "$(sql "$busy" "SELECT count(*) FROM deliveries WHERE state <> 'sent'")" != 0 ]; then
	echo "  the advance after the restart answered:" >&2
	printf '%s\n' "$OUT" | sed 's/^/    | /' >&2
	queue_report "$busy"
fi
for ch in webhook sms; do
	out=$(spool_check "$busy" "$ch")
	check_rc "after the restart, $ch: exactly one spool file per delivery id ($out)" 0 $?
done
check_eq "one delivery per (rule, customer, occurrence, action)" 0 \
	"$(sql "$busy" "SELECT count(*) FROM (SELECT 1 FROM deliveries GROUP BY rule, customer_id, occurrence, action HAVING count(*) > 1)")"
stop_daemon "$busy" 5
check_eq "SIGTERM after the restart: exit 0" 0 "$EXIT_STATUS"

# ---- 6. SIGTERM during evaluation -------------------------------------------------
# A rule that fires every minute in every customer's zone (and matches
# nobody) makes the start-up catch-up evaluation run for a while with no
# dispatch batch: SIGTERM then must still stop the daemon.
slow=$E2E_TMP/slow
mkdir -p "$slow/rules"
cat >"$slow/rules/busy.yaml" <<'YAML'
name: every-minute
category: care
trigger: { cron: "* * * * *" }
audience: tier = 'no-such-tier'
actions:
  - webhook: { url: "http://127.0.0.1:9/hook" }
YAML
make_instance "$slow" "$slow/rules"
cp "$busy/customers.csv" "$slow/"
start_daemon "$slow" 2027-03-01T00:00:00Z
ctl "$slow" import customers "$slow/customers.csv" >/dev/null 2>&1 || die "import for the evaluation test failed"
stop_daemon "$slow" 5
check_eq "SIGTERM before the catch-up test: exit 0" 0 "$EXIT_STATUS"
start_daemon "$slow" 2027-03-01T06:00:00Z
evaluating=$(ctl_json "$slow" status | jq -r '.last_tick == null')
stop_daemon "$slow" 5
if [ "$evaluating" = true ]; then
	check_eq "SIGTERM during the catch-up evaluation: exit 0 within 5 s" 0 "$EXIT_STATUS"
else
	echo "note: the catch-up evaluation was over before SIGTERM; case not exercised"
fi

e2e_finish
