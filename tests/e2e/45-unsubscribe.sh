#!/bin/bash
# 45-unsubscribe: the one-click unsubscribe link works and is honoured at once.
#
# nudged serves http.listen on 127.0.0.1; a birthday email goes to the spool;
# its List-Unsubscribe URL is taken from the .eml. A GET shows a page and
# changes nothing; a forged token is refused; an RFC 8058 one-click POST
# withdraws consent. A delivery queued before the unsubscribe is suppressed
# at send time, and next year's birthday is not sent. /health and /metrics
# answer.
set -euo pipefail
src=${NUDGE_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${NUDGE_BUILD:-$src/build}
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
pass=0
fail=0
check() { if eval "$2"; then echo "ok - $1"; pass=$((pass + 1)); else echo "not ok - $1"; fail=$((fail + 1)); fi; }

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/rules"
cp "$src"/rules/birthday.* "$tmp/rules/"
cat >"$tmp/nudge.yaml" <<YAML
database: nudge.db
rules: rules
calendars: $src/calendars
timezone: UTC
admin_socket: nudge.sock
spool_dir: spool
http: { listen: "127.0.0.1:$port", public_url: "http://127.0.0.1:$port" }
YAML
cat >"$tmp/customers.csv" <<'CSV'
id,name,email,birthday,consent_email
u1,Ann Lee,ann@example.com,1990-03-10,yes
u2,Bo Chen,bo@example.com,1990-03-12,yes
CSV
ctl() { "$build/nudgectl" -s "$tmp/nudge.sock" "$@"; }
(cd "$tmp" && exec "$build/nudged" -c nudge.yaml --now 2027-03-01T00:00:00Z --frozen 2>nudged.log) &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/nudge.sock" ] && break; sleep 0.1; done
ctl import customers "$tmp/customers.csv" >/dev/null 2>&1
ctl advance --to 2027-03-10T12:00:00Z >/dev/null

eml=$(ls "$tmp"/spool/email/*.eml | head -1)
url=$(/usr/bin/python3 -c '
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
print(str(m["List-Unsubscribe"]).strip("<>"))' "$eml")
check "the birthday mail carries a List-Unsubscribe URL on our endpoint" '[[ "$url" == http://127.0.0.1:$port/unsubscribe\?c=u1\&ch=email\&t=* ]]'
# The token and the coupon code, recomputed with Python's hmac from the
# installation secret: HMAC-SHA256 of "unsubscribe\nID\nCHANNEL" (first 32
# hex digits) and of "coupon\nRULE\nID\nOCCURRENCE" (8 characters of the
# code alphabet after the rule's prefix).
secret=$(sqlite3 "$tmp/nudge.db" "SELECT value FROM meta WHERE key = 'secret'")
indep=$(/usr/bin/python3 - "$secret" "$eml" <<'PY'
import email, email.policy, hashlib, hmac, sys
secret, path = sys.argv[1].encode(), sys.argv[2]
mac = lambda data: hmac.new(secret, data.encode(), hashlib.sha256).digest()
token = mac("unsubscribe\nu1\nemail").hex()[:32]
code = "".join("ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[b % 32] for b in mac("coupon\nbirthday-greeting\nu1\nbirthday:2027")[:8])
m = email.message_from_binary_file(open(path, "rb"), policy=email.policy.default)
text = m.get_body(("plain",)).get_content()
ok_token = str(m["List-Unsubscribe"]).endswith("&t=%s>" % token)
ok_code = ("BDAY-" + code) in text
print("token %s, coupon BDAY-%s: %s %s" % (token, code, ok_token, ok_code))
PY
)
check "token and coupon match Python's hmac ($indep)" '[[ "$indep" == *"True True" ]]'

code=$(curl -s -o "$tmp/get.html" -w '%{http_code}' "$url")
check "GET shows a confirmation page with a button (200)" '[ "$code" = 200 ] && grep -q "<form method=\"post\"" "$tmp/get.html"'
consent=$(sqlite3 "$tmp/nudge.db" "SELECT granted FROM consents k JOIN customers c ON c.id = k.customer_id WHERE c.ext_id = 'u1' AND channel = 'email'")
check "a GET changes nothing" '[ "$consent" = 1 ]'

# The forgery changes the token's last character to one it is not.
last=${url: -1}; [ "$last" = 0 ] && swap=1 || swap=0
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d 'List-Unsubscribe=One-Click' "${url%?}$swap")
check "a forged token is refused (403)" '[ "$code" = 403 ]'
bad=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d 'List-Unsubscribe=One-Click' "${url/c=u1/c=u2}")
check "a token for another customer is refused (403)" '[ "$bad" = 403 ]'

code=$(curl -s -o "$tmp/post.html" -w '%{http_code}' -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
    -d 'List-Unsubscribe=One-Click' "$url")
check "one-click POST unsubscribes (200)" '[ "$code" = 200 ] && grep -q "no more email" "$tmp/post.html"'
consent=$(sqlite3 "$tmp/nudge.db" "SELECT granted || ':' || source FROM consents k JOIN customers c ON c.id = k.customer_id WHERE c.ext_id = 'u1' AND channel = 'email'")
check "consent withdrawn at once, source recorded" '[ "$consent" = "0:unsubscribe-link" ]'
tl=$(sqlite3 "$tmp/nudge.db" "SELECT count(*) FROM timeline t JOIN customers c ON c.id = t.customer_id WHERE c.ext_id = 'u1' AND kind = 'unsubscribed'")
check "the unsubscribe is on the customer's timeline" '[ "$tl" = 1 ]'

# A delivery already queued when the customer unsubscribes is suppressed.
sqlite3 -cmd ".timeout 10000" "$tmp/nudge.db" "INSERT INTO deliveries (rule, customer_id, occurrence, action, channel, due_at, created_at, next_attempt_at) SELECT 'birthday-greeting', id, 'manual:1', 0, 'email', 0, 0, 0 FROM customers WHERE ext_id = 'u1'"
ctl advance --to 2027-03-10T13:00:00Z >/dev/null
state=$(sqlite3 "$tmp/nudge.db" "SELECT state FROM deliveries WHERE occurrence = 'manual:1'")
check "a delivery queued before the unsubscribe ends suppressed, not sent" '[ "$state" = suppressed ]'

ctl advance --to 2028-03-13T00:00:00Z >/dev/null
n_u1=$(sqlite3 "$tmp/nudge.db" "SELECT count(*) FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE c.ext_id = 'u1' AND d.state = 'sent'")
check "next year's birthday mail is not sent to the unsubscribed customer" '[ "$n_u1" = 1 ]'
n_u2=$(sqlite3 "$tmp/nudge.db" "SELECT count(*) FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE c.ext_id = 'u2' AND d.state = 'sent'")
check "the other customer still gets hers (2027 and 2028)" '[ "$n_u2" = 2 ]'

health=$(curl -s "http://127.0.0.1:$port/health")
check "/health answers ok" '[[ "$health" == *"\"status\":\"ok\""* ]]'
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
check "/metrics counts deliveries by state" 'grep -q "^nudge_deliveries{state=\"suppressed\"} 1$" <<<"$metrics" && grep -q "^nudge_deliveries{state=\"sent\"} 3$" <<<"$metrics"'
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nope")
check "unknown paths are 404" '[ "$code" = 404 ]'

kill -TERM "$pid"
wait "$pid" && rc=0 || rc=$?
pid=
check "nudged stops cleanly with the HTTP endpoint running" '[ "$rc" = 0 ]'
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
