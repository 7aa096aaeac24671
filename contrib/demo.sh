#!/bin/sh
# demo.sh: the main job of nudge on the embedded defaults, in one command.
#
# Installs what is missing, builds, generates ~1,000 demo customers and their
# orders, starts nudged on the shipped rules/ with the spool transport (no
# mail server needed) on a frozen clock, moves the clock across January and
# into February 2027, and shows what happened. Everything lands in ./demo/.
#
#   contrib/demo.sh [CUSTOMERS]       (default 1000)
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
n=${1:-1000}
build=build-demo
demo=$src/demo
start=2026-12-31T12:00:00Z
end=2027-02-08T00:00:00Z

contrib/install-deps.sh
echo "demo: building (release) in $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNUDGE_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

rm -rf "$demo"
mkdir -p "$demo"
/usr/bin/python3 contrib/gen-demo-data.py --customers "$n" --out "$demo"
cat >"$demo/nudge.yaml" <<YAML
# The demo's configuration: everything beside this file, mail to the spool.
database: nudge.db
rules: $src/rules
calendars: $src/calendars
timezone: Asia/Shanghai
admin_socket: nudge.sock
spool_dir: spool
channels:
  email: { transport: spool, from: "Shop 商店 <shop@example.com>" }
  sms: { transport: spool }
  webhook: { transport: spool }
  task:
    transport: task
    staff: [alice, bob]
    # Each new task is also emailed to its assignee (here: to the spool).
    notify: { email: { alice: alice@shop.example.com, bob: bob@shop.example.com } }
YAML

ctl() { "$build/nudgectl" -s "$demo/nudge.sock" "$@"; }

echo "demo: checking the rules"
"$build/nudgectl" -c "$demo/nudge.yaml" check "$src/rules"
echo "demo: starting nudged with a frozen clock at $start"
"$build/nudged" -c "$demo/nudge.yaml" --now "$start" --frozen 2>"$demo/nudged.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
i=0
until [ -S "$demo/nudge.sock" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
        cat "$demo/nudged.log"
        echo "demo: nudged did not start" >&2
        exit 1
    fi
    sleep 0.1
done
ctl import customers "$demo/customers.csv"
ctl import orders "$demo/orders.csv"
echo
ctl rules
echo
echo "demo: advancing the clock to $end (every fire, every delivery, in time order)"
ctl advance --to "$end"
echo
echo "Deliveries per rule and channel:"
sqlite3 -column -header "$demo/nudge.db" \
    "SELECT rule, channel, state, count(*) AS deliveries FROM deliveries
     GROUP BY rule, channel, state ORDER BY rule, channel, state"
echo
echo "Spool: $demo/spool"
for d in "$demo"/spool/*; do
    printf '  %-8s %5d files\n' "$(basename "$d")" "$(ls "$d" | wc -l)"
done
echo
echo "Callback tasks for alice (nudgectl tasks --owner alice):"
ctl tasks --owner alice | head -6
echo
echo "Task notifications emailed to staff (channels.task.notify), by recipient:"
grep -h '^To: ' $(grep -l '^Subject: New callback task' "$demo"/spool/email/*.eml) |
    sort | uniq -c | sed 's/^/  /'
echo
eml=$(grep -l '^X-Nudge-Rule: birthday-greeting' "$demo"/spool/email/*.eml | head -1)
echo "One birthday email, as a mail client shows it ($eml):"
/usr/bin/python3 - "$eml" <<'PY'
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
for h in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
    print("  %-17s %s" % (h + ":", m[h]))
print("  parts:            " + ", ".join(p.get_content_type() for p in m.walk() if not p.is_multipart()))
print()
for line in m.get_body(("plain",)).get_content().splitlines():
    print("  | " + line)
PY
echo
echo "demo: stopping nudged (SIGTERM)"
kill -TERM $pid
wait $pid && echo "demo: nudged exited cleanly"
trap - EXIT
echo "demo: done. The database is $demo/nudge.db; the log is $demo/nudged.log."
