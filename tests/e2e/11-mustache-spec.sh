#!/bin/bash
# 11-mustache-spec.sh: the official Mustache spec's core modules (comments,
# delimiters, interpolation, inverted, partials, sections; vendored in
# tests/mustache-spec/) rendered through the real `nudgectl render`, offline.
# tests/mustache-spec/run.py does the work and prints "N passed, M failed".
#
# Environment: NUDGE_SRC (default: the repository root), NUDGE_BUILD (default:
# $NUDGE_SRC/build).
set -u

here=$(cd "$(dirname "$0")" && pwd)
NUDGE_SRC=${NUDGE_SRC:-$(cd "$here/../.." && pwd)}
NUDGE_BUILD=${NUDGE_BUILD:-$NUDGE_SRC/build}

if [ ! -x "$NUDGE_BUILD/nudgectl" ]; then
    echo "FAIL: $NUDGE_BUILD/nudgectl is missing; build it (it provides 'nudgectl render')" >&2
    exit 1
fi
exec /usr/bin/python3 "$NUDGE_SRC/tests/mustache-spec/run.py" "$NUDGE_BUILD/nudgectl" \
    "$NUDGE_SRC/tests/mustache-spec"
