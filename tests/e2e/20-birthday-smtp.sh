#!/bin/bash
# 20-birthday-smtp: the shipped birthday rule, end to end, through real SMTP.
#
# A real SMTP server (Python's aiosmtpd, Maildir handler) listens on
# 127.0.0.1; nudged runs the shipped rules/birthday.yaml on a frozen clock
# with the smtp transport. Customers in Asia/Shanghai, America/New_York and
# Europe/London (born 29 February) must each get exactly one message, at 09:00
# their time, and the delivered mail is checked with Python's email package,
# an independent MIME parser: recipient, RFC 2047 subject with a Chinese name,
# text and HTML parts, Message-ID, List-Unsubscribe. Advancing again sends
# nothing more.
set -euo pipefail
src=${NUDGE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${NUDGE_BUILD:-$src/build}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
pass=0
fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $*"; fail=$((fail + 1)); }

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/maildir/tmp" "$tmp/maildir/new" "$tmp/maildir/cur" "$tmp/rules"
/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$tmp/maildir" \
    >"$tmp/smtpd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
done

cp "$src"/rules/birthday.* "$tmp/rules/"
cat >"$tmp/nudge.yaml" <<YAML
database: nudge.db
rules: rules
calendars: $src/calendars
timezone: Asia/Shanghai
admin_socket: nudge.sock
spool_dir: spool
channels:
  email:
    transport: smtp
    host: 127.0.0.1
    port: $port
    starttls: "no"
    from: "Shop 商店 <shop@example.com>"
YAML
cat >"$tmp/customers.csv" <<'CSV'
id,name,first_name,email,birthday,tz,tier,consent_email
c1,王芳,芳,wang.fang@example.com,1990-01-15,Asia/Shanghai,high-value,yes
c2,John Smith,John,john@example.com,1985-01-15,America/New_York,normal,yes
c3,Leap Lee,Leap,leap@example.com,1992-02-29,Europe/London,potential,yes
c4,No Mail,No,,1990-01-15,Asia/Shanghai,normal,yes
c5,Opted Out,Opted,out@example.com,1990-01-15,Asia/Shanghai,normal,no
CSV

ctl() { "$build/nudgectl" -s "$tmp/nudge.sock" "$@"; }
(cd "$tmp" && exec "$build/nudged" -c nudge.yaml --now 2027-01-14T12:00:00Z --frozen 2>nudged.log) &
pids+=($!)
for _ in $(seq 100); do [ -S "$tmp/nudge.sock" ] && break; sleep 0.1; done
ctl import customers "$tmp/customers.csv" >/dev/null

count() { find "$tmp/maildir/new" -type f 2>/dev/null | wc -l; }

# 09:00 in Shanghai is 01:00Z: only c1 is due by 02:00Z.
ctl advance --to 2027-01-15T02:00:00Z >/dev/null
[ "$(count)" = 1 ] && ok "Shanghai customer greeted at 09:00 local (01:00Z)" ||
    not_ok "expected 1 message by 02:00Z, got $(count)"
# 09:00 in New York is 14:00Z.
ctl advance --to 2027-01-15T13:59:00Z >/dev/null
[ "$(count)" = 1 ] && ok "nothing for New York before 09:00 local" ||
    not_ok "expected still 1 message at 13:59Z, got $(count)"
ctl advance --to 2027-01-15T14:00:00Z >/dev/null
[ "$(count)" = 2 ] && ok "New York customer greeted at 14:00Z" ||
    not_ok "expected 2 messages at 14:00Z, got $(count)"
# 29 February in a common year: 28 February, 09:00 London = 09:00Z.
ctl advance --to 2027-02-28T08:59:00Z >/dev/null
[ "$(count)" = 2 ] && ok "29 Feb birthday not before 2027-02-28 09:00 London" ||
    not_ok "expected 2 messages before 2027-02-28T09:00Z, got $(count)"
ctl advance --to 2027-02-28T09:00:00Z >/dev/null
[ "$(count)" = 3 ] && ok "29 Feb birthday greeted on 28 Feb 2027" ||
    not_ok "expected 3 messages at 2027-02-28T09:00Z, got $(count)"
ctl advance --to 2027-03-02T00:00:00Z >/dev/null
ctl advance --to 2027-03-02T00:00:00Z >/dev/null
[ "$(count)" = 3 ] && ok "exactly one message per customer after advancing again" ||
    not_ok "expected 3 messages after the second advance, got $(count)"

# The outbox agrees: 3 sent, c4 (no email) and c5 (no consent) never enqueued.
states=$(sqlite3 "$tmp/nudge.db" "SELECT state || ':' || count(*) FROM deliveries GROUP BY state")
[ "$states" = "sent:3" ] && ok "outbox holds 3 sent deliveries and nothing else" ||
    not_ok "outbox states: $states"

if /usr/bin/python3 - "$tmp/maildir" <<'PY'
import email, email.policy, os, sys
d = os.path.join(sys.argv[1], "new")
msgs = {}
for f in os.listdir(d):
    m = email.message_from_binary_file(open(os.path.join(d, f), "rb"), policy=email.policy.default)
    msgs[m["To"].addresses[0].addr_spec] = m
fails = []
def check(cond, what):
    if not cond:
        fails.append(what)
check(sorted(msgs) == ["john@example.com", "leap@example.com", "wang.fang@example.com"],
      "recipients: %s" % sorted(msgs))
m = msgs.get("wang.fang@example.com")
raw = open(os.path.join(d, [f for f in os.listdir(d) if b"wang.fang" in open(os.path.join(d, f), "rb").read()][0]), "rb").read()
check(b"=?UTF-8?" in raw.split(b"\n\n")[0].upper() or b"=?utf-8?" in raw.split(b"\n\n")[0], "subject and names RFC 2047-encoded on the wire")
check(str(m["Subject"]) == "Happy birthday, 芳! A gift inside 🎂", "decoded subject: %r" % str(m["Subject"]))
check(m["To"].addresses[0].display_name == "王芳", "To display name: %r" % m["To"].addresses[0].display_name)
check(m["From"].addresses[0].display_name == "Shop 商店", "From display name: %r" % m["From"].addresses[0].display_name)
check(m.get_content_type() == "multipart/alternative", "top type %s" % m.get_content_type())
parts = [p.get_content_type() for p in m.walk() if not p.is_multipart()]
check(parts == ["text/plain", "text/html"], "parts %s" % parts)
text = m.get_body(("plain",)).get_content()
html = m.get_body(("html",)).get_content()
check("Dear 芳," in text and "15% off" in text and "BDAY-" in text, "text part: %r" % text[:200])
check("<p>Dear 芳,</p>" in html and "BDAY-" in html, "html part")
check(m["Message-ID"].startswith("<nudge-") and m["Message-ID"].endswith("@example.com>"), "Message-ID %s" % m["Message-ID"])
check(len({str(x["Message-ID"]) for x in msgs.values()}) == 3, "Message-IDs unique")
check(m["List-Unsubscribe"].startswith("<http://") and m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click", "List-Unsubscribe headers")
check(m["Date"].datetime.isoformat() == "2027-01-15T01:00:00+00:00", "Date %s" % m["Date"])
j = msgs.get("john@example.com")
check(j["Date"].datetime.isoformat() == "2027-01-15T14:00:00+00:00", "John's Date %s" % j["Date"])
l = msgs.get("leap@example.com")
check(l["Date"].datetime.isoformat() == "2027-02-28T09:00:00+00:00", "Leap's Date %s" % l["Date"])
for f in fails:
    print("   mismatch:", f)
sys.exit(1 if fails else 0)
PY
then ok "delivered mail parses: recipients, decoded Chinese subject and names, both parts, headers"
else not_ok "delivered mail content"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
