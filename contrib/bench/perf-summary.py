#!/usr/bin/python3
"""perf-summary.py: where nudged spends its CPU, from `perf script` output.

    perf script -i perf.data -F comm,tid,ip,sym,dso > script.txt
    contrib/bench/perf-summary.py script.txt [--focus FUNC ...] [--top N]

perf's own report lists library internals (sqlite3VdbeExec, _int_malloc)
that say little about which part of nudge asked for them. This prints:
  - inclusive share of every nudged function (the daemon's own code, from
    the binary's symbols), i.e. "this call and everything below it";
  - for each --focus function (e.g. sqlite3_prepare_v2, malloc), which
    nudged function called it, as a share of all samples;
  - for each --callees function, which functions it called directly (where
    its time went), as a share of all samples.
Needs a call graph with --call-graph dwarf (the Debian libraries are built
without frame pointers, so -g alone loses the callers).
"""
import argparse
import collections
import re
import sys

FRAME = re.compile(r"^\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")


def samples(path):
    stack = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                if stack is not None:
                    yield stack
                stack = None
                continue
            if not line[0].isspace():
                stack = []
                continue
            m = FRAME.match(line)
            if m and stack is not None:
                sym = m.group(2)
                sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
                sym = sym.replace(" (inlined)", "")
                stack.append((sym, m.group(3)))
    if stack:
        yield stack


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("script")
    ap.add_argument("--binary", default="nudged", help="basename of the daemon's binary")
    ap.add_argument("--focus", action="append", default=[])
    ap.add_argument("--callees", action="append", default=[],
                    help="FUNC: split FUNC's inclusive samples by the function it called")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    total = 0
    incl = collections.Counter()
    focus = {f: collections.Counter() for f in a.focus}
    callees = {f: collections.Counter() for f in a.callees}
    for st in samples(a.script):
        total += 1
        own = [s for s, dso in st if dso.endswith("/" + a.binary)]
        for s in set(own):
            incl[s] += 1
        for fname, ctr in callees.items():
            for i, (s, dso) in enumerate(st):
                if s == fname:
                    ctr[st[i - 1][0] if i > 0 else "(self)"] += 1
                    break
        for fname, ctr in focus.items():
            for i, (s, dso) in enumerate(st):
                if s == fname:
                    caller = next((t for t, d in st[i + 1:] if d.endswith("/" + a.binary)), "?")
                    ctr[caller] += 1
                    break
    if not total:
        print("no samples")
        return 1
    print("%d samples" % total)
    print("inclusive share of nudged's own functions:")
    for s, n in incl.most_common(a.top):
        print("  %5.1f%%  %s" % (100.0 * n / total, s))
    for fname, ctr in focus.items():
        print("%s (%.1f%% of all samples), by nudged caller:" % (fname, 100.0 * sum(ctr.values()) / total))
        for s, n in ctr.most_common(12):
            print("  %5.1f%%  %s" % (100.0 * n / total, s))
    for fname, ctr in callees.items():
        print("%s (%.1f%% of all samples), by callee:" % (fname, 100.0 * sum(ctr.values()) / total))
        for s, n in ctr.most_common(15):
            print("  %5.1f%%  %s" % (100.0 * n / total, s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
