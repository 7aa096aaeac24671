#!/usr/bin/python3
"""tally.py: the crash test's accounting (tests/e2e/50-kill-9.sh).

Compares the outbox (the deliveries table) with what the receivers recorded
after a run of kill -9 / restart rounds, and prints one verdict per check:
"PASS what" or "FAIL what: why" (read by lib.sh's admin_results), "INFO ..."
lines with the counts, and writes a one-line summary to --summary.

Inputs:
  --db FILE          nudge.db (opened read-only)
  --smtp FILE        tests/smtp/count_server.py's record: time, Message-ID,
                     RCPT list, peer port (tab-separated)
  --webhook FILE     tests/http/receiver.py's JSON-lines log
  --inflight FILE    "ROUND<TAB>ID" per row in state 'sending' right after each
                     kill: the rows that were in flight when the daemon died
  --kill-times FILE   "ROUND<TAB>STARTED<TAB>KILLED" (unix seconds) per kill:
                     only for the INFO lines on how long the results of rows
                     already at the receiver waited unrecorded before the kill
  --kills N --batch B --concurrency C --max-connections M --expected N
  --hook-path PATH

Checks (per channel, email and webhook):
  - the outbox holds exactly --expected deliveries, all in a final state, and
    all of them 'sent' (nothing pending/retry/sending/dead);
  - every received key names a delivery of that channel in the database
    (Message-ID <nudge-ID-HASH@...>, webhook-id nudge-ID), the email went to
    that delivery's customer, the webhook body repeats the key and its
    signature verifies;
  - distinct keys received == deliveries sent, as sets: nothing recorded as
    sent is missing at the receiver (lost) and nothing arrived that the
    outbox did not send;
  - every repeat of a delivery carries byte-for-byte the same key (and the
    same recipient / URL path) as its first arrival, so a receiver can drop it;
  - a delivery arrived at most as often as it was claimed (attempts, plus
    the kills it was in flight at: take-back at start does not count the
    killed attempt), and
    every delivery that arrived more than once was in flight ('sending') at
    one of the kills, and at most 1 + (the number of such kills) times;
  - email duplicates <= kills * concurrency: the smtp backend reports each
    message's outcome as its reply arrives and the dispatcher makes it
    durable (the slot's sent journal) before the next message of that
    session goes out, so a kill repeats at most the one message in flight
    per open session;
  - webhook duplicates <= kills * concurrency * max_connections: the http
    engine reports each request as its answer arrives, in the same way, and
    a session has at most max_connections requests in flight.
"""
import argparse
import json
import re
import sqlite3
import sys
from collections import Counter, defaultdict

MSGID_RE = re.compile(r"^<nudge-(\d+)-([0-9a-f]+)@([^>]+)>$")
HOOKID_RE = re.compile(r"^nudge-(\d+)$")

results = []


def check(ok, what, why=""):
    results.append(ok)
    if ok:
        print("PASS %s" % what)
    else:
        print("FAIL %s: %s" % (what, why))


def info(text):
    print("INFO %s" % text)


def sample(items, n=5):
    items = sorted(items)
    return "%s%s" % (items[:n], " ..." if len(items) > n else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--smtp", required=True)
    ap.add_argument("--webhook", required=True)
    ap.add_argument("--inflight", required=True)
    ap.add_argument("--kill-times", help="ROUND<TAB>START<TAB>KILL (unix seconds) per kill")
    ap.add_argument("--kills", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--max-connections", type=int, default=1,
                    help="the webhook channel's requests in flight per session")
    ap.add_argument("--expected", type=int, required=True)
    ap.add_argument("--hook-path", required=True)
    ap.add_argument("--summary", required=True)
    a = ap.parse_args()

    db = sqlite3.connect("file:%s?mode=ro" % a.db, uri=True)
    rows = db.execute(
        "SELECT d.id, d.channel, d.state, d.attempts, c.email FROM deliveries d"
        " LEFT JOIN customers c ON c.id = d.customer_id").fetchall()
    by_id = {r[0]: r for r in rows}
    states = Counter(r[2] for r in rows)
    by_channel = Counter(r[1] for r in rows)
    sent = {ch: {r[0] for r in rows if r[1] == ch and r[2] == "sent"} for ch in ("email", "webhook")}
    inflight = defaultdict(set)
    for line in open(a.inflight, encoding="utf-8"):
        line = line.strip()
        if line:
            rnd, i = line.split("\t")
            inflight[int(i)].add(int(rnd))

    info("deliveries: %d (%s); by state: %s" % (
        len(rows), ", ".join("%s %d" % kv for kv in sorted(by_channel.items())),
        ", ".join("%s %d" % kv for kv in sorted(states.items()))))
    info("rows in flight ('sending') at the kills: %d (distinct %d)" % (
        sum(len(v) for v in inflight.values()), len(inflight)))

    check(len(rows) == a.expected, "the outbox holds %d deliveries (%d customers x email + webhook)"
          % (a.expected, a.expected // 2), "it holds %d" % len(rows))
    unfinished = {s: n for s, n in states.items() if s in ("pending", "retry", "sending")}
    check(not unfinished, "every delivery reached a final state",
          "still unsettled: %s; e.g. ids %s" % (unfinished, sample(
              r[0] for r in rows if r[2] in ("pending", "retry", "sending"))))
    not_sent = {s: n for s, n in states.items() if s != "sent"}
    if not_sent:
        errs = db.execute("SELECT id, state, attempts, last_error FROM deliveries"
                          " WHERE state != 'sent' ORDER BY id LIMIT 5").fetchall()
    check(not not_sent, "every delivery is 'sent' (none dead, suppressed or skipped)",
          "%s; e.g. %s" % (not_sent, errs if not_sent else ""))

    # ---- email ---------------------------------------------------------------
    email_recv = defaultdict(list)  # id -> [(msgid, rcpts)]
    arrivals = {"email": defaultdict(list), "webhook": defaultdict(list)}  # id -> [unix time]
    bad_email = []
    n_email = 0
    for line in open(a.smtp, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4:
            bad_email.append("malformed record line %r" % line[:80])
            continue
        n_email += 1
        t, msgid, rcpts, _ = parts
        m = MSGID_RE.match(msgid)
        if not m:
            bad_email.append("Message-ID %r is not nudge's" % msgid)
            continue
        i = int(m.group(1))
        arrivals["email"][i].append(float(t))
        email_recv[i].append((msgid, rcpts))
        r = by_id.get(i)
        if r is None or r[1] != "email":
            bad_email.append("Message-ID %s names no email delivery (%s)" % (msgid, r and r[1]))
        elif rcpts != r[4]:
            bad_email.append("%s went to %r, the delivery's customer is %r" % (msgid, rcpts, r[4]))

    # ---- webhook -------------------------------------------------------------
    hook_recv = defaultdict(list)  # id -> [(webhook-id, path)]
    bad_hook = []
    n_hook = 0
    for line in open(a.webhook, encoding="utf-8"):
        req = json.loads(line)
        n_hook += 1
        h = req.get("headers", {})
        wid = h.get("webhook-id", "")
        m = HOOKID_RE.match(wid)
        if not m:
            bad_hook.append("webhook-id %r is not nudge's (%s %s)" % (wid, req.get("method"), req.get("path")))
            continue
        i = int(m.group(1))
        arrivals["webhook"][i].append(float(req.get("t", 0)))
        hook_recv[i].append((wid, req.get("path")))
        r = by_id.get(i)
        body = req.get("json") or {}
        if r is None or r[1] != "webhook":
            bad_hook.append("webhook-id %s names no webhook delivery (%s)" % (wid, r and r[1]))
        if req.get("path") != a.hook_path or req.get("method") != "POST":
            bad_hook.append("%s: %s %s" % (wid, req.get("method"), req.get("path")))
        if body.get("idempotency_key") != wid:
            bad_hook.append("%s: body idempotency_key %r" % (wid, body.get("idempotency_key")))
        if req.get("signature_valid") is not True:
            bad_hook.append("%s: signature does not verify" % wid)

    # Rows in flight at a kill that had already reached the receiver during
    # that round: their results existed but were not yet recorded when the
    # process died (the dispatcher records a batch's results in one
    # transaction after the whole batch). These are the duplicates.
    if a.kill_times:
        rounds = {}
        for line in open(a.kill_times, encoding="utf-8"):
            if line.strip():
                r, up, killed = line.split("\t")
                rounds[int(r)] = (float(up), float(killed))
        for ch in ("email", "webhook"):
            per = []
            for r, (up, killed) in sorted(rounds.items()):
                ids = [i for i, rs in inflight.items() if r in rs and by_id.get(i, (0, ""))[1] == ch]
                before = [killed - t for i in ids for t in arrivals[ch].get(i, []) if up <= t <= killed]
                per.append("r%d %d/%d%s" % (r, len(before), len(ids),
                                            " (waited up to %d ms)" % (max(before) * 1000) if before else ""))
            info("%s rows in flight at each kill that had already arrived (arrived/in flight): %s"
                 % (ch, ", ".join(per)))

    summary = {}
    limits = {"email": (a.kills * a.concurrency, "kills x concurrency (%d x %d)" % (
                  a.kills, a.concurrency)),
              "webhook": (a.kills * a.concurrency * a.max_connections,
                          "kills x concurrency x max_connections (%d x %d x %d)" % (
                              a.kills, a.concurrency, a.max_connections))}
    for ch, recv, n_total, bad in (("email", email_recv, n_email, bad_email),
                                   ("webhook", hook_recv, n_hook, bad_hook)):
        key = "Message-ID" if ch == "email" else "webhook-id"
        distinct = set(recv)
        dup_ids = {i for i, v in recv.items() if len(v) > 1}
        lost = sent[ch] - distinct
        extra = distinct - sent[ch]
        info("%s: %d received, %d distinct %ss, %d duplicates (%d deliveries received more than once,"
             " at most %d times)" % (ch, n_total, len(distinct), key, n_total - len(distinct),
                                     len(dup_ids), max((len(v) for v in recv.values()), default=0)))
        check(not bad, "every %s received names a %s delivery in the database%s" % (
            key, ch, ", went to its customer" if ch == "email" else
            ", repeats it in the body and is validly signed"),
            "%d problems, e.g. %s" % (len(bad), bad[:3]))
        check(not lost, "no %s delivery lost: every sent one reached the receiver" % ch,
              "%d sent but never received, e.g. %s" % (len(lost), sample(lost)))
        check(not extra, "the receiver holds no %s the outbox did not record as sent" % ch,
              "%d received but not 'sent' in the outbox, e.g. %s" % (
                  len(extra), [(i, by_id.get(i, (0, 0, "absent"))[2]) for i in sorted(extra)[:5]]))
        check(len(distinct) == len(sent[ch]), "distinct %ss (%d) == %s deliveries sent (%d)" % (
            key, len(distinct), ch, len(sent[ch])), "they differ")
        diff_key = {i: v for i, v in recv.items() if len(set(v)) > 1}
        check(not diff_key, "every %s duplicate carries the same %s (and %s) as its original" % (
            ch, key, "recipient" if ch == "email" else "URL path"),
            "%d deliveries arrived with different keys, e.g. %s" % (
                len(diff_key), list(diff_key.items())[:2]))
        # A start takes back what a killed instance left in flight without
        # counting that attempt, so each kill a row was in flight at adds
        # one claim that attempts does not show.
        over = {i: (len(v), by_id[i][3], len(inflight.get(i, ()))) for i, v in recv.items()
                if i in by_id and len(v) > by_id[i][3] + len(inflight.get(i, ()))}
        check(not over, "no %s delivery arrived more often than it was claimed (attempts +"
              " kills it was in flight at)" % ch,
              "%d deliveries, id: (arrivals, attempts, kills in flight) %s" % (
                  len(over), dict(list(over.items())[:5])))
        not_inflight = sorted(i for i in dup_ids if i not in inflight)
        check(not not_inflight, "every duplicated %s delivery was in flight at a kill" % ch,
              "%d duplicated deliveries were not 'sending' at any kill, e.g. %s" % (
                  len(not_inflight), not_inflight[:5]))
        # Each repeat needs a claim that died with the process: a delivery
        # in flight at k kills arrives at most k + 1 times.
        too_many = {i: (len(v), sorted(inflight.get(i, ()))) for i, v in recv.items()
                    if len(v) - 1 > len(inflight.get(i, ()))}
        check(not too_many, "no %s delivery repeated more often than the kills it was in flight at"
              % ch, "%d deliveries, id: (arrivals, kill rounds in flight) %s" % (
                  len(too_many), dict(list(too_many.items())[:5])))
        ndup = n_total - len(distinct)
        limit, how = limits[ch]
        info("%s: %.2f duplicates per kill (%d kills)" % (ch, ndup / a.kills if a.kills else 0,
                                                          a.kills))
        check(ndup <= limit, "%s duplicates (%d) <= %s = %d" % (ch, ndup, how, limit), "too many")
        summary[ch] = (len(distinct), ndup, len(lost))

    not_final = sum(n for s, n in states.items() if s in ("pending", "retry", "sending"))
    lost_total = summary["email"][2] + summary["webhook"][2] + not_final + max(0, a.expected - len(rows))
    line = ("kill -9 x%d: %d deliveries, %d sent, email %d distinct (%d duplicates, %.2f per kill), "
            "webhook %d distinct (%d duplicates, %.2f per kill), %d lost" % (
                a.kills, len(rows), states.get("sent", 0), summary["email"][0], summary["email"][1],
                summary["email"][1] / max(a.kills, 1), summary["webhook"][0],
                summary["webhook"][1], summary["webhook"][1] / max(a.kills, 1), lost_total))
    with open(a.summary, "w", encoding="utf-8") as f:
        f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
