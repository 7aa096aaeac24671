#!/usr/bin/env bash
# 37-rules-columns: `nudgectl rules` keeps its columns aligned when a rule
# has several actions (a long ACTIONS cell) or a long name: in every row,
# each column starts where its heading does.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 37-rules-columns

rules=$E2E_TMP/rules
mkdir -p "$rules"
printf 'Hi\n' >"$rules/msg.subject"
printf 'Hi\n' >"$rules/msg.txt"
cat >"$rules/everything.yaml" <<'YAML'
name: everything
trigger: { daily: { at: "09:00" } }
actions:
  - email: { template: msg }
  - sms: { text: "hi" }
  - webhook: { url: "http://127.0.0.1:9/hook" }
  - task: { kind: callback, assign: round-robin, due_in: 1d, note: "call" }
YAML
cat >"$rules/a-rather-long-rule-name-for-columns.yaml" <<'YAML'
name: a-rather-long-rule-name-for-columns
category: care
trigger: { weekly: { days: [mon], at: "10:00" } }
actions:
  - email: { template: msg }
YAML
inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC
start_daemon "$inst" 2027-05-01T00:00:00Z
run_cmd ctl "$inst" rules
check_rc "nudgectl rules" 0 "$RC"
check_contains "the multi-action rule lists its actions" "$OUT" "email,sms,webhook,task"
res=$("$PY" - "$OUT" <<'PY'
import re, sys
lines = sys.argv[1].splitlines()
head = lines[0]
cols = [head.index(h) for h in ("RULE", "CATEGORY", "TRIGGER", "ACTIONS", "NEXT FIRE")]
bad = []
for l in lines[1:]:
    # Cells are single words separated by at least one space: their starts.
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S", l)][:5]
    if starts != cols:
        bad.append("%r starts %s, headings %s" % (l, starts, cols))
print("; ".join(bad) if bad else "aligned %d rows" % (len(lines) - 1))
PY
)
check_eq "every row's columns start under their headings" "aligned 2 rows" "$res"
stop_daemon "$inst"
e2e_finish
