#!/bin/bash
# 46-policy: quiet hours hold marketing messages until the window ends in
# the customer's own zone; a daily frequency cap (a local calendar day)
# defers the one too many to the next local morning with its reason; care
# rules are never held or capped.
set -euo pipefail
src=${NUDGE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${NUDGE_BUILD:-$src/build}
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
pass=0
fail=0
check() { if eval "$2"; then echo "ok - $1"; pass=$((pass + 1)); else echo "not ok - $1 ($3)"; fail=$((fail + 1)); fi; }

mkdir -p "$tmp/rules"
for r in late:22:00:marketing early:09:00:marketing second:10:00:marketing care:23:00:care; do
    IFS=: read -r name hh mm cat <<<"$r"
    cat >"$tmp/rules/$name.yaml" <<YAML
name: $name
category: $cat
trigger: { daily: { at: "$hh:$mm" } }
actions:
  - email: { template: msg }
YAML
done
printf 'Hello {{first_name}}\n' >"$tmp/rules/msg.subject"
printf 'Rule {{rule}}\n' >"$tmp/rules/msg.txt"
cat >"$tmp/nudge.yaml" <<YAML
database: nudge.db
rules: rules
calendars: $src/calendars
timezone: UTC
admin_socket: nudge.sock
spool_dir: spool
policy: { quiet_hours: { start: "21:00", end: "08:00" }, max_per_day: 2 }
YAML
printf 'id,name,email,tz\nq1,Quinn,q@example.com,America/New_York\n' >"$tmp/customers.csv"
ctl() { "$build/nudgectl" -s "$tmp/nudge.sock" "$@"; }
(cd "$tmp" && exec "$build/nudged" -c nudge.yaml --now 2027-05-01T18:00:00Z --frozen 2>nudged.log) &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/nudge.sock" ] && break; sleep 0.1; done
ctl import customers "$tmp/customers.csv" >/dev/null 2>&1
q() { sqlite3 "$tmp/nudge.db" "$1"; }

# 22:00 New York (EDT) on 1 May = 02:00Z on 2 May; quiet until 08:00 EDT = 12:00Z.
ctl advance --to 2027-05-02T03:00:00Z >/dev/null
st=$(q "SELECT state || '|' || next_attempt_at || '|' || last_error FROM deliveries WHERE rule = 'late'")
check "a 22:00 marketing mail is held during quiet hours" '[[ "$st" == "pending|$(date -ud 2027-05-02T12:00:00Z +%s)|quiet hours until 08:00 America/New_York" ]]' "$st"
care=$(q "SELECT state FROM deliveries WHERE rule = 'care'")
check "a care message is never held (23:00 local, sent)" '[ "$care" = sent ]' "$care"
ctl advance --to 2027-05-02T12:00:00Z >/dev/null
st=$(q "SELECT state || '|' || sent_at FROM deliveries WHERE rule = 'late'")
check "the held mail goes out when quiet hours end (08:00 local)" '[ "$st" = "sent|$(date -ud 2027-05-02T12:00:00Z +%s)" ]' "$st"
# 09:00 and 10:00 New York on 2 May: the 09:00 one makes 2 on that local day
# (cap 2), so 10:00 is one too many: it waits for 3 May, whose midnight is
# quiet, so until 08:00 EDT (12:00Z).
ctl advance --to 2027-05-02T15:00:00Z >/dev/null
early=$(q "SELECT state FROM deliveries WHERE rule = 'early' AND occurrence = '2027-05-02'")
second=$(q "SELECT state || '|' || last_error FROM deliveries WHERE rule = 'second' AND occurrence = '2027-05-02'")
second_at=$(q "SELECT next_attempt_at FROM deliveries WHERE rule = 'second' AND occurrence = '2027-05-02'")
check "the second marketing mail of the day is within the cap" '[ "$early" = sent ]' "$early"
check "the third is deferred to the next local day's end of quiet hours, with the cap as its reason" '[[ "$second" == "pending|frequency cap (max_per_day 2): 2 already on 2027-05-02 (America/New_York); deferred to 2027-05-03T12:00:00Z" ]]' "$second"
check "the deferred one is due at 12:00Z on 3 May" '[ "$second_at" = "$(date -ud 2027-05-03T12:00:00Z +%s)" ]' "$second_at"
files=$(ls "$tmp/spool/email" | wc -l)
check "the spool holds exactly the sent mails" '[ "$files" = "$(q "SELECT count(*) FROM deliveries WHERE state = '\''sent'\''")" ]' "$files"

kill -TERM "$pid"; wait "$pid" || true; pid=
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
