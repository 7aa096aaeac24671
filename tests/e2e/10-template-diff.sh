#!/bin/bash
# 10-template-diff.sh: differential test of the Mustache renderer against
# mustache.js. Every case in tests/template/cases.json (template, JSON data,
# partials) is rendered by `nudgectl render` (lib/template.c, HTML
# escaping on) and by tests/template/render.js (mustache.js), and the two
# outputs must be identical byte for byte.
#
# Where the official Mustache spec and mustache.js disagree, nudge follows the
# spec (see lib/template.h). A case that shows such a difference carries
# "spec" (the spec file and case it follows, e.g. "interpolation.json: Dotted
# Names - Context Precedence") and "expected" (the spec's output); nudge is
# compared with that instead of with mustache.js. Only cases that the spec's
# core modules decide may do this.
#
# Environment: NUDGE_SRC (default: the repository root), NUDGE_BUILD (default:
# $NUDGE_SRC/build). NUDGE_RENDER overrides the C side's command (it is run as
# `$NUDGE_RENDER --data FILE --partials DIR TEMPLATE`), e.g. to try a
# hand-built driver. Options go before the template so that the command line
# works with any getopt ordering.
set -u

here=$(cd "$(dirname "$0")" && pwd)
NUDGE_SRC=${NUDGE_SRC:-$(cd "$here/../.." && pwd)}
NUDGE_BUILD=${NUDGE_BUILD:-$NUDGE_SRC/build}
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}
cases=$NUDGE_SRC/tests/template/cases.json
renderjs=$NUDGE_SRC/tests/template/render.js

if [ -n "${NUDGE_RENDER:-}" ]; then
    read -r -a c_render <<<"$NUDGE_RENDER"
elif [ -x "$NUDGE_BUILD/nudgectl" ]; then
    c_render=("$NUDGE_BUILD/nudgectl" render)
else
    echo "FAIL: $NUDGE_BUILD/nudgectl is missing; build it (it provides 'nudgectl render')" >&2
    exit 1
fi
if ! command -v node >/dev/null || [ ! -d "$NODE_PATH/mustache" ]; then
    echo "FAIL: node and mustache.js are needed (apt-get install nodejs node-mustache)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One directory per case: template.mustache, data.json, partials/NAME.mustache.
/usr/bin/python3 - "$cases" "$work" <<'PY' || exit 1
import json, os, sys
cases = json.load(open(sys.argv[1], encoding="utf-8"))
seen = set()
for i, c in enumerate(cases):
    name = c["name"]
    assert name not in seen, "duplicate case name " + name
    seen.add(name)
    d = os.path.join(sys.argv[2], "%03d-%s" % (i + 1, name))
    os.makedirs(os.path.join(d, "partials"))
    # newline="" keeps \r\n exactly as written in the corpus.
    with open(os.path.join(d, "template.mustache"), "w", encoding="utf-8", newline="") as f:
        f.write(c["template"])
    with open(os.path.join(d, "data.json"), "w", encoding="utf-8") as f:
        json.dump(c["data"], f, ensure_ascii=False)
    # A spec override must name the spec case it follows.
    assert ("expected" in c) == ("spec" in c), name + ": 'expected' and 'spec' go together"
    if "expected" in c:
        assert c["spec"].split(":")[0] in ("comments.json", "delimiters.json",
                                           "interpolation.json", "inverted.json",
                                           "partials.json", "sections.json"), \
            name + ": 'spec' must name a core module case, e.g. 'partials.json: Standalone ...'"
        with open(os.path.join(d, "spec-expected"), "w", encoding="utf-8", newline="") as f:
            f.write(c["expected"])
        with open(os.path.join(d, "spec"), "w", encoding="utf-8") as f:
            f.write(c["spec"])
    for pname, text in c.get("partials", {}).items():
        with open(os.path.join(d, "partials", pname + ".mustache"), "w", encoding="utf-8",
                  newline="") as f:
            f.write(text)
PY

# A sanity check that the C side works at all, so a missing `render` command
# fails with one clear message instead of one diff per case.
probe=$work/probe
mkdir -p "$probe"
printf 'ok {{x}}' >"$probe/t.mustache"
printf '{"x":1}' >"$probe/d.json"
if [ "$("${c_render[@]}" --data "$probe/d.json" --partials "$probe" "$probe/t.mustache" 2>&1)" != "ok 1" ]; then
    echo "FAIL: '${c_render[*]} --data FILE --partials DIR TEMPLATE' does not render:" >&2
    "${c_render[@]}" --data "$probe/d.json" --partials "$probe" "$probe/t.mustache" >&2
    exit 1
fi

pass=0
fail=0
for d in "$work"/[0-9]*; do
    case_name=$(basename "$d")
    if ! node "$renderjs" "$d/template.mustache" "$d/data.json" "$d/partials" >"$d/expected" 2>"$d/node.err"; then
        echo "FAIL $case_name: mustache.js failed:"
        cat "$d/node.err"
        fail=$((fail + 1))
        continue
    fi
    ref="mustache.js"
    if [ -f "$d/spec-expected" ]; then
        if cmp -s "$d/expected" "$d/spec-expected"; then
            echo "note $case_name: mustache.js now agrees with the spec ($(cat "$d/spec")); the override can go"
        fi
        cp "$d/spec-expected" "$d/expected"
        ref="spec $(cat "$d/spec")"
    fi
    if ! "${c_render[@]}" --data "$d/data.json" --partials "$d/partials" "$d/template.mustache" \
            >"$d/actual" 2>"$d/c.err"; then
        echo "FAIL $case_name: nudge render failed:"
        cat "$d/c.err"
        fail=$((fail + 1))
        continue
    fi
    if cmp -s "$d/expected" "$d/actual"; then
        pass=$((pass + 1))
    else
        echo "FAIL $case_name: output differs (- $ref, + nudge; lines shown with repr())"
        /usr/bin/python3 - "$d" "$ref" <<'PY'
import difflib, sys
d = sys.argv[1]
exp = open(d + "/expected", "rb").read().decode("utf-8", "replace").splitlines(True)
act = open(d + "/actual", "rb").read().decode("utf-8", "replace").splitlines(True)
for line in difflib.unified_diff([repr(l) + "\n" for l in exp], [repr(l) + "\n" for l in act],
                                 sys.argv[2], "nudge", n=2):
    sys.stdout.write("    " + line)
PY
        fail=$((fail + 1))
    fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
