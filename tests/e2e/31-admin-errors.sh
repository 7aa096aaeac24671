#!/usr/bin/env bash
# 31-admin-errors: the admin socket survives whatever a client sends.
#
# Talks to the socket directly (Python's socket module) and proves that each
# of these gets exactly one line back, a JSON object {"ok": false, "error":
# "..."} with a useful message, and that the daemon still answers `status`
# afterwards (and its clock did not move):
#   garbage bytes (NUL, invalid UTF-8), invalid JSON, an empty line, a JSON
#   array / string / number / null, an object without "cmd", a "cmd" that is
#   not a string, an unknown command (with a did-you-mean), arguments of the
#   wrong type (advance to: 123, retry id: "7", preview rule: 5, forecast
#   from: 1, import data: 5, queue state: 5, queue limit: "ten", tasks
#   owner: 5), a time that is not a time, advance backwards, advance on a
#   daemon whose clock is not frozen (also through nudgectl, exit 1).
# And that the protocol holds up: two requests in one write get two answers
# in order; a request written a byte at a time gets one answer; a request
# followed at once by a half-close still gets its answer; a 10 MB line with
# no newline and then a close is dropped (no answer needed) while the daemon
# carries on; a 10 MB valid request is answered; a client that goes away in
# the middle of an advance does not hurt the daemon; 200 concurrent
# connections each get their answer, and 300 idle ones do not block a new
# client.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 31-admin-errors

inst=$E2E_TMP/frozen
make_instance "$inst" "$NUDGE_SRC/rules"
start_daemon "$inst" 2027-01-01T00:00:00Z
# A few customers so that commands have something to look at.
cat >"$E2E_TMP/customers.csv" <<'CSV'
id,name,first_name,email,phone,birthday,tz,tier,consent_email,consent_sms
A1,Ada Lovelace,Ada,ada@example.com,+12025550101,1990-01-02,Europe/London,high-value,yes,yes
B2,张伟,伟,wei@example.com,+8613800000002,1985-01-03,Asia/Shanghai,potential,yes,yes
CSV
run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
check_rc "import a few customers" 0 "$RC"

cat >"$E2E_TMP/client.py" <<'PY'
"""Talks to the admin socket; prints PASS/FAIL lines for the shell to count."""
import json, os, socket, sys, threading, time

SOCK = sys.argv[1]
MODE = sys.argv[2]


def connect():
    """A non-blocking connect to a Unix socket fails with EAGAIN while the
    listen backlog is full; a client retries (for up to 10 s) as the daemon
    accepts."""
    deadline = time.time() + 10
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        try:
            s.connect(SOCK)
            return s
        except BlockingIOError:
            s.close()
            if time.time() > deadline:
                raise
            time.sleep(0.01)


def read_lines(s, n=1):
    """Reads n complete lines (or until EOF); returns (lines, eof)."""
    buf = b""
    while buf.count(b"\n") < n:
        try:
            d = s.recv(65536)
        except socket.timeout:
            return buf.split(b"\n")[:-1], "timeout"
        if not d:
            return buf.split(b"\n")[:-1], True
        buf += d
    return buf.split(b"\n")[:n], False


def ask(raw, n=1):
    s = connect()
    s.sendall(raw)
    lines, eof = read_lines(s, n)
    s.close()
    return lines, eof


def verdict(ok, what, why=""):
    print(("PASS " if ok else "FAIL ") + what + ("" if ok else ": " + why))
    sys.stdout.flush()


def expect_error(what, raw, *needles):
    lines, eof = ask(raw)
    if len(lines) != 1:
        verdict(False, what, "no answer line (eof=%s)" % eof)
        return
    try:
        rep = json.loads(lines[0])
    except ValueError as e:
        verdict(False, what, "answer is not JSON (%s): %r" % (e, lines[0][:200]))
        return
    if not isinstance(rep, dict) or rep.get("ok") is not False:
        verdict(False, what, "expected {\"ok\": false, ...}, got %s" % lines[0][:300].decode(errors="replace"))
        return
    err = rep.get("error")
    if not isinstance(err, str) or not err:
        verdict(False, what, "no error message: %r" % rep)
        return
    for n in needles:
        if n.lower() not in err.lower():
            verdict(False, what, "error %r does not mention %r" % (err, n))
            return
    verdict(True, what + " -> " + err[:90])


def status():
    lines, _ = ask(b'{"cmd":"status"}\n')
    if len(lines) != 1:
        return None
    rep = json.loads(lines[0])
    return rep if rep.get("ok") is True else None


def expect_alive(what):
    st = status()
    verdict(st is not None, "daemon answers status after " + what, "no status answer")
    return st


if MODE == "errors":
    before = status()
    cases = [
        ("garbage bytes", b"\x00\x01\xff\xfe garbage \xc3\x28\n"),
        ("invalid UTF-8 inside a JSON string", b'{"cmd":"stat\xff\xfeus"}\n'),
        ("invalid JSON", b'{"cmd": "status",,}\n', "column"),
        ("a truncated JSON object", b'{"cmd": "status"\n'),
        ("an empty line", b"\n"),
        ("a JSON array", b'["status"]\n', "object"),
        ("a JSON string", b'"status"\n'),
        ("a JSON number", b"42\n"),
        ("JSON null", b"null\n"),
        ("an object without cmd", b'{"command":"status"}\n', "cmd"),
        ("cmd that is not a string", b'{"cmd":5}\n', "cmd"),
        ("cmd that is an object", b'{"cmd":{"name":"status"}}\n', "cmd"),
        ("an unknown command (did you mean)", b'{"cmd":"stauts"}\n', "stauts", "did you mean", "status"),
        ("an unknown command far from any", b'{"cmd":"xyzzy-plugh"}\n', "xyzzy-plugh"),
        ("advance with to: 123", b'{"cmd":"advance","to":123}\n', "to"),
        ("advance without to", b'{"cmd":"advance"}\n', "to"),
        ("advance to a non-time", b'{"cmd":"advance","to":"tomorrow"}\n', "tomorrow"),
        ("advance backwards", b'{"cmd":"advance","to":"2026-12-31T23:59:00Z"}\n', "forward"),
        ("retry with id: \"7\"", b'{"cmd":"retry","id":"7"}\n', "id"),
        ("retry of a delivery that does not exist", b'{"cmd":"retry","id":999999}\n', "999999"),
        ("preview with rule: 5", b'{"cmd":"preview","rule":5}\n', "rule"),
        ("preview of an unknown rule (did you mean)", b'{"cmd":"preview","rule":"birthday-greting"}\n', "did you mean", "birthday-greeting"),
        ("forecast with from: 1", b'{"cmd":"forecast","from":1,"to":"2027-02-01T00:00:00Z"}\n', "from"),
        ("forecast with to before from", b'{"cmd":"forecast","from":"2027-02-01T00:00:00Z","to":"2027-01-01T00:00:00Z"}\n'),
        ("import with data: 5", b'{"cmd":"import","kind":"customers","name":"x.csv","data":5}\n', "data"),
        ("import of an unknown kind", b'{"cmd":"import","kind":"products","name":"x.csv","data":"id\\n"}\n', "kind"),
        ("queue with an unknown state", b'{"cmd":"queue","state":"lost"}\n', "lost"),
        ("queue with state: 5", b'{"cmd":"queue","state":5}\n', "state"),
        ("queue with limit: \"ten\"", b'{"cmd":"queue","limit":"ten"}\n', "limit"),
        ("tasks with owner: 5", b'{"cmd":"tasks","owner":5}\n', "owner"),
        ("task-done with id: \"1\"", b'{"cmd":"task-done","id":"1"}\n', "id"),
    ]
    for c in cases:
        expect_error(c[0], c[1], *c[2:])
    after = expect_alive("the malformed requests")
    if before and after:
        verdict(before["now"] == after["now"], "the clock did not move (%s)" % after["now"],
                "it moved from %s to %s" % (before["now"], after["now"]))
        verdict(before["ruleset_version"] == after["ruleset_version"],
                "the rule set was not touched", "version %s -> %s" % (before["ruleset_version"], after["ruleset_version"]))

elif MODE == "protocol":
    # Two requests in one write: two answers, in order.
    lines, eof = ask(b'{"cmd":"status"}\n{"cmd":"rules"}\n', 2)
    ok = len(lines) == 2
    try:
        a, b = (json.loads(x) for x in lines)
        ok = ok and "ruleset_version" in a and "rules" in b and isinstance(b["rules"], list)
    except Exception:
        ok = False
    verdict(ok, "two requests in one write get two answers in order", "got %r" % lines)

    # A request written one byte at a time.
    s = connect()
    for ch in b'{"cmd":"status"}\n':
        s.sendall(bytes([ch]))
        time.sleep(0.002)
    lines, eof = read_lines(s)
    s.close()
    verdict(len(lines) == 1 and json.loads(lines[0]).get("ok") is True,
            "a request written byte by byte gets one answer", "got %r eof=%s" % (lines, eof))

    # A request and at once a half-close (echo ... | nc -U): still answered.
    s = connect()
    s.sendall(b'{"cmd":"status"}\n')
    s.shutdown(socket.SHUT_WR)
    lines, eof = read_lines(s)
    s.close()
    verdict(len(lines) == 1 and json.loads(lines[0]).get("ok") is True,
            "a request followed by a half-close is still answered", "got %r eof=%s" % (lines, eof))

    # 10 MB without a newline, then close: nothing to answer, daemon unhurt.
    s = connect()
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent < 10 * 1024 * 1024:
            s.sendall(chunk)
            sent += len(chunk)
        s.shutdown(socket.SHUT_WR)
        lines, eof = read_lines(s)
        ok = (not lines) or all(json.loads(l).get("ok") is False for l in lines)
        verdict(ok, "a 10 MB line without a newline, then close: dropped or refused (%d answer line(s))" % len(lines),
                "got %r" % [l[:100] for l in lines])
    except (BrokenPipeError, ConnectionResetError):
        verdict(True, "a 10 MB line without a newline: the daemon closed the connection")
    s.close()
    expect_alive("a 10 MB line without a newline")

    # The same again, but the client just vanishes mid-line.
    s = connect()
    try:
        s.sendall(b'{"cmd":"status","pad":"' + b"y" * (3 * 1024 * 1024))
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()
    expect_alive("a client that vanished in the middle of a 3 MB line")

    # A 10 MB request that is valid JSON is simply answered.
    s = connect()
    s.sendall(b'{"cmd":"status","pad":"' + b"z" * (10 * 1024 * 1024) + b'"}\n')
    lines, eof = read_lines(s)
    s.close()
    verdict(len(lines) == 1 and json.loads(lines[0]).get("ok") is True,
            "a 10 MB valid request is answered", "got %r eof=%s" % ([l[:100] for l in lines], eof))

    # A client that leaves in the middle of an advance.
    s = connect()
    s.sendall(b'{"cmd":"advance","to":"2027-01-03T00:00:00Z"}\n')
    s.close()
    deadline = time.time() + 60
    st = None
    while time.time() < deadline:
        st = status()
        if st and st["now"] == "2027-01-03T00:00:00Z" and st.get("batches_running", 0) == 0:
            break
        time.sleep(0.1)
    verdict(st is not None and st["now"] == "2027-01-03T00:00:00Z",
            "an advance whose client went away still completes", "status: %r" % st)
    # And one more advance answers normally afterwards.
    lines, eof = ask(b'{"cmd":"advance","to":"2027-01-04T00:00:00Z"}\n')
    verdict(len(lines) == 1 and json.loads(lines[0]).get("ok") is True,
            "the next advance is answered", "got %r" % lines)

elif MODE == "concurrent":
    N = 200
    results = [None] * N
    barrier = threading.Barrier(N)

    def worker(i):
        try:
            s = connect()
            barrier.wait(timeout=30)
            s.sendall(b'{"cmd":"status"}\n' if i % 2 else b'{"cmd":"nope"}\n')
            lines, eof = read_lines(s)
            s.close()
            rep = json.loads(lines[0]) if len(lines) == 1 else None
            results[i] = rep is not None and rep.get("ok") is (i % 2 == 1)
        except Exception as e:
            results[i] = "%s" % e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    bad = [(i, r) for i, r in enumerate(results) if r is not True]
    verdict(not bad, "%d concurrent connections each get their own answer" % N,
            "%d wrong, e.g. %r" % (len(bad), bad[:3]))

    idle = []
    try:
        for _ in range(300):
            idle.append(connect())
        verdict(True, "300 idle connections are accepted")
    except OSError as e:
        verdict(False, "300 idle connections are accepted", "after %d: %s" % (len(idle), e))
    st = status()
    verdict(st is not None, "status is answered while 300 idle connections are open", "no answer")
    for s in idle:
        s.close()
    expect_alive("closing 300 idle connections")
PY

admin_results < <("$PY" "$E2E_TMP/client.py" "$inst/nudge.sock" errors 2>&1)
admin_results < <("$PY" "$E2E_TMP/client.py" "$inst/nudge.sock" protocol 2>&1)
admin_results < <("$PY" "$E2E_TMP/client.py" "$inst/nudge.sock" concurrent 2>&1)

# nudgectl shows the daemon's error and exits 1.
run_cmd ctl "$inst" advance --to 2026-06-01T00:00:00Z
check_rc "nudgectl advance backwards exits 1" 1 "$RC"
check_contains "nudgectl advance backwards says why" "$ERR" "only moves forward"
run_cmd ctl "$inst" preview no-such-rule
check_rc "nudgectl preview of an unknown rule exits 1" 1 "$RC"
check_contains "nudgectl preview of an unknown rule names it" "$ERR" "no-such-rule"
run_cmd ctl "$inst" queue --state lost
check_rc "nudgectl queue --state lost exits 1" 1 "$RC"

check_true "the frozen daemon is alive after everything" daemon_alive "$inst"
check_log_clean "$inst"

# ---- advance on a daemon whose clock runs ---------------------------------------
live=$E2E_TMP/live
make_instance "$live" "$NUDGE_SRC/rules"
start_daemon_args "$live" --now 2027-01-01T00:00:00Z
cat >"$E2E_TMP/live.py" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(b'{"cmd":"advance","to":"2027-06-01T00:00:00Z"}\n')
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(4096)
    if not d:
        break
    buf += d
rep = json.loads(buf)
ok = rep.get("ok") is False and "frozen" in rep.get("error", "")
print(("PASS " if ok else "FAIL ") + "advance on a running clock is refused" +
      (" -> " + rep.get("error", "")[:80] if ok else ": got %r" % rep))
PY
admin_results < <("$PY" "$E2E_TMP/live.py" "$live/nudge.sock" 2>&1)
run_cmd ctl "$live" advance --to 2027-06-01T00:00:00Z
check_rc "nudgectl advance on a running clock exits 1" 1 "$RC"
check_contains "nudgectl advance on a running clock says it needs --frozen" "$ERR" "frozen"
run_cmd ctl_json "$live" status
check_eq "the running clock was not set to the advance target" false \
	"$(jq_get "$OUT" '.now | startswith("2027-06-01")')"
check_true "the running daemon is alive" daemon_alive "$live"
stop_daemon "$live"
check_eq "the running daemon stops with status 0" 0 "$EXIT_STATUS"
stop_daemon "$inst"
check_eq "the frozen daemon stops with status 0" 0 "$EXIT_STATUS"
check_log_clean "$live"
check_log_clean "$inst"

e2e_finish
