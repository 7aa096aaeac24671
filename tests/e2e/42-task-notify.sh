#!/usr/bin/env bash
# 42-task-notify: callback tasks tell their assignee (channels.task.notify),
# by email through a real SMTP server (aiosmtpd) and by a signed webhook to
# tests/http/receiver.py, and a failing receiver delays only the webhook.
#
# The shipped monthly-callback rule fires on 1 March 2027, 09:30 UTC, for
# three high-value customers: H1 owned by alice (address in notify.email), H2
# without owner (round-robin over staff [bob], who has no address), H3 owned
# by carol@shop.example (an address itself). Checked:
#   1. while the receiver answers 503: three tasks exist, alice and carol got
#      one email each (To, Subject, the note, the task id to close), bob's
#      task says why no email went out, and the three task deliveries wait
#      for a retry with the webhook failure as their last error;
#   2. after the receiver answers 200 again and the retry falls due: each
#      task's webhook arrived, validly signed (Python hmac), webhook-id
#      task-<id>, body type task.created with the task and customer; the
#      deliveries are sent; no second task and no second email;
#   3. `nudgectl --json tasks` shows when each assignee was told.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 42-task-notify

SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
log=$E2E_TMP/requests.jsonl
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- SMTP server and HTTP receiver ------------------------------------------------
smtp_port=$(free_port)
maildir=$E2E_TMP/maildir
mkdir -p "$maildir/tmp" "$maildir/new" "$maildir/cur"
"$PY" -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$maildir" \
	>"$E2E_TMP/smtpd.log" 2>&1 &
E2E_PIDS+=($!)
for _ in $(seq 1 100); do
	"$PY" -c "import socket; socket.create_connection(('127.0.0.1', $smtp_port), 1)" 2>/dev/null && break
	sleep 0.1
done

http_port=$(free_port)
start_receiver() { # ROUTE-ARGS...
	"$PY" "$NUDGE_SRC/tests/http/receiver.py" --port "$http_port" --log "$log" \
		--webhook-secret "$SECRET" "$@" >"$E2E_TMP/receiver.out" 2>"$E2E_TMP/receiver.err" &
	RECEIVER=$!
	E2E_PIDS+=("$RECEIVER")
	for _ in $(seq 1 100); do
		[ -s "$E2E_TMP/receiver.out" ] && return 0
		sleep 0.1
	done
	die "receiver.py did not start: $(cat "$E2E_TMP/receiver.err")"
}
start_receiver --route '/hooks/tasks={"status": 503}'

# ---- instance ----------------------------------------------------------------------
rules=$E2E_TMP/rules
mkdir -p "$rules"
cp "$NUDGE_SRC/rules/monthly-callback.yaml" "$rules/"
printf '%s\n' "$SECRET" >"$E2E_TMP/tasks.whsec"
inst=$E2E_TMP/inst
mkdir -p "$inst"
config_head "$inst" "$rules" UTC >"$inst/nudge.yaml"
cat >>"$inst/nudge.yaml" <<YAML
channels:
  email:
    transport: smtp
    host: 127.0.0.1
    port: $smtp_port
    starttls: "no"
    from: "Shop <shop@example.com>"
  task:
    transport: task
    staff: [bob]
    notify:
      email: { alice: alice@shop.example }
      webhook: { url: "http://127.0.0.1:$http_port/hooks/tasks", secret_file: $E2E_TMP/tasks.whsec, timeout: 5 }
YAML
cat >"$E2E_TMP/customers.csv" <<'CSV'
id,name,phone,email,tz,tier,owner
H1,Helen Hu,+86 139 0000 0001,helen@example.com,UTC,high-value,alice
H2,Hugo Ha,+86 139 0000 0002,,UTC,high-value,
H3,Hana Ho,,hana@example.com,UTC,high-value,carol@shop.example
N1,Ned No,,ned@example.com,UTC,normal,alice
CSV

start_daemon "$inst" 2027-02-28T00:00:00Z
run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
check_rc "import customers" 0 "$RC"

# ---- 1. the receiver fails ---------------------------------------------------------
run_cmd ctl "$inst" advance --to 2027-03-01T12:00:00Z
check_rc "advance past the monthly fire (receiver answering 503)" 0 "$RC"
check_eq "three callback tasks (H1, H2, H3)" "H1 alice
H2 bob
H3 carol@shop.example" "$(sql "$inst" "SELECT c.ext_id || ' ' || t.assignee FROM tasks t JOIN customers c ON c.id = t.customer_id ORDER BY c.ext_id")"
mails() { find "$maildir/new" -type f | sort; }
check_eq "two notification emails (alice, carol)" 2 "$(mails | wc -l)"
OUT=$("$PY" - "$maildir/new" "$inst/nudge.db" <<'PY' 2>&1
import email, email.policy, glob, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[2], uri=True)
ids = dict(db.execute("SELECT t.assignee, t.id FROM tasks t"))
notes = dict(db.execute("SELECT t.assignee, t.note FROM tasks t"))
problems, seen = [], []
for path in sorted(glob.glob(sys.argv[1] + "/*")):
    m = email.message_from_binary_file(open(path, "rb"), policy=email.policy.default)
    to = m["To"].addresses[0].addr_spec
    seen.append(to)
    who = "alice" if to == "alice@shop.example" else to
    body = m.get_body(("plain",)).get_content()
    if not str(m["Subject"]).startswith("New callback task: "):
        problems.append("%s: subject %r" % (to, str(m["Subject"])))
    if notes.get(who, "?") not in body:
        problems.append("%s: the task's note is not in the text" % to)
    if "nudgectl task done %d" % ids.get(who, -1) not in body:
        problems.append("%s: no 'nudgectl task done %s' in the text" % (to, ids.get(who)))
    if m["Auto-Submitted"] != "auto-generated" or m["List-Unsubscribe"]:
        problems.append("%s: headers Auto-Submitted=%s List-Unsubscribe=%s" % (to, m["Auto-Submitted"], m["List-Unsubscribe"]))
if sorted(seen) != ["alice@shop.example", "carol@shop.example"]:
    problems.append("recipients %s" % sorted(seen))
print("\n".join(problems) if problems else "emails to %s" % ", ".join(sorted(seen)))
sys.exit(1 if problems else 0)
PY
)
check_rc "each email names the task, its note and how to close it ($OUT)" 0 $?
check_contains "bob's task says why no email went out" \
	"$(sql "$inst" "SELECT notify_error FROM tasks WHERE assignee = 'bob'")" "no address for bob"
check_eq "every task delivery waits for a retry" "retry retry retry" \
	"$(sql "$inst" "SELECT group_concat(state, ' ') FROM (SELECT state FROM deliveries WHERE channel = 'task' ORDER BY id)")"
check_contains "the retry's reason is the webhook" \
	"$(sql "$inst" "SELECT last_error FROM deliveries WHERE channel = 'task' LIMIT 1")" "notifying"
check_eq "no webhook counted as done" 0 "$(sql "$inst" "SELECT count(*) FROM tasks WHERE notified_webhook_at IS NOT NULL")"
check_eq "the receiver saw (failed) webhooks for each of the three tasks" 3 \
	"$(jq -r 'select(.path == "/hooks/tasks") | .headers["webhook-id"]' "$log" | sort -u | wc -l)"

# ---- 2. the receiver recovers ------------------------------------------------------
kill "$RECEIVER" 2>/dev/null
wait "$RECEIVER" 2>/dev/null
: >"$E2E_TMP/receiver.out"
: >"$log"
start_receiver
run_cmd ctl "$inst" advance --to 2027-03-01T18:00:00Z
check_rc "advance until the retries fall due (receiver answering 200)" 0 "$RC"
check_eq "the task deliveries are sent" "sent sent sent" \
	"$(sql "$inst" "SELECT group_concat(state, ' ') FROM (SELECT state FROM deliveries WHERE channel = 'task' ORDER BY id)")"
check_eq "still three tasks" 3 "$(sql "$inst" "SELECT count(*) FROM tasks")"
check_eq "still two emails (the retry repeated only the webhook)" 2 "$(mails | wc -l)"
sql "$inst" "SELECT t.id, t.assignee, c.ext_id FROM tasks t JOIN customers c ON c.id = t.customer_id" >"$E2E_TMP/tasks.txt"
OUT=$("$PY" - "$log" "$E2E_TMP/tasks.txt" <<'PY' 2>&1
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
hooks = [r for r in reqs if r["path"] == "/hooks/tasks"]
tasks = {}
for line in open(sys.argv[2]):
    i, who, cust = line.strip().split("|")
    tasks["task-" + i] = (int(i), who, cust)
problems = []
if sorted(r["headers"].get("webhook-id") for r in hooks) != sorted(tasks):
    problems.append("webhook-ids %s, tasks %s" % (sorted(r["headers"].get("webhook-id") for r in hooks), sorted(tasks)))
for r in hooks:
    wid = r["headers"].get("webhook-id")
    body = r["json"] or {}
    if r.get("signature_valid") is not True:
        problems.append("%s: signature not valid" % wid)
    if wid not in tasks:
        continue
    i, who, cust = tasks[wid]
    t = body.get("task") or {}
    if body.get("type") != "task.created" or t.get("id") != i or t.get("assignee") != who:
        problems.append("%s: type/id/assignee %s/%s/%s" % (wid, body.get("type"), t.get("id"), t.get("assignee")))
    if t.get("kind") != "callback" or not t.get("note") or not t.get("due_at", "").startswith("2027-03-06"):
        problems.append("%s: kind/note/due %s/%s/%s" % (wid, t.get("kind"), t.get("note"), t.get("due_at")))
    if (body.get("customer") or {}).get("id") != cust:
        problems.append("%s: customer %s, expected %s" % (wid, body.get("customer"), cust))
print("\n".join(problems) if problems else "%d webhooks, signed, one per task" % len(hooks))
sys.exit(1 if problems else 0)
PY
)
check_rc "one signed task.created webhook per task, webhook-id task-<id> ($OUT)" 0 $?

# ---- 3. nudgectl tasks ---------------------------------------------------------------
run_cmd ctl_json "$inst" tasks
check_rc "nudgectl --json tasks" 0 "$RC"
check_eq "every task shows when the webhook went out" 3 \
	"$(jq '[.tasks[] | select(.notified_webhook_at != null)] | length' <<<"$OUT")"
check_eq "alice's and carol's tasks show when the email went out" 2 \
	"$(jq '[.tasks[] | select(.notified_email_at != null and .notify_error == null)] | length' <<<"$OUT")"

run_cmd ctl "$inst" advance --to 2027-03-03T00:00:00Z
check_eq "nothing more is sent later" "2 3" "$(mails | wc -l) $(grep -c '"/hooks/tasks"' "$log")"

stop_daemon "$inst"
check_eq "nudged stops cleanly" 0 "$EXIT_STATUS"
check_log_clean "$inst"

# ---- 4. mistakes in notify are refused at start, with where and what -----------------
bad_notify() { # NAME SETTING-LINE-REGEX REPLACEMENT EXPECTED-TEXT
	local dir=$E2E_TMP/bad-$1
	mkdir -p "$dir"
	sed -e "s|^      $2|      $3|" -e "s|$inst|$dir|g" "$inst/nudge.yaml" >"$dir/nudge.yaml"
	run_cmd timeout 20 "$NUDGED" -c "$dir/nudge.yaml" --now 2027-02-28T00:00:00Z --frozen
	check_true "nudged refuses to start with $1 (exit $RC)" test "$RC" -ne 0 -a "$RC" -ne 124
	check_contains "the error for $1 says what is wrong" "$ERR" "$4"
	check_contains "the error for $1 names the file" "$ERR" "$dir/nudge.yaml:"
}
bad_notify "a misspelt notify key" "email: .*" "emial: { alice: alice@shop.example }" \
	"unknown key 'emial' in channels.task.notify"
check_contains "the misspelt key gets a suggestion" "$ERR" "did you mean 'email'?"
bad_notify "a staff address without @" "email: .*" "email: { alice: alice.shop.example }" \
	"channels.task.notify.email.alice must be an email address"
bad_notify "a webhook without url" "webhook: .*" "webhook: { secret_file: x }" "needs a url"
# The dispatcher's per-channel settings are checked the same way.
mkdir -p "$E2E_TMP/bad-batch"
sed -e "s|^    staff: \[bob\]|    staff: [bob]\n    batch: 0|" -e "s|$inst|$E2E_TMP/bad-batch|g" \
	"$inst/nudge.yaml" >"$E2E_TMP/bad-batch/nudge.yaml"
run_cmd timeout 20 "$NUDGED" -c "$E2E_TMP/bad-batch/nudge.yaml" --now 2027-02-28T00:00:00Z --frozen
check_true "nudged refuses to start with channels.task.batch: 0 (exit $RC)" test "$RC" -ne 0 -a "$RC" -ne 124
check_contains "the error names the setting and its range" "$ERR" "channels.task.batch must be 1 to 10000"
e2e_finish
