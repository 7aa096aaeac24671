#!/bin/sh
# test.sh: install what is missing, build a debug build with AddressSanitizer
# and UndefinedBehaviorSanitizer, and run every test (cmocka units and the
# end-to-end scripts) through ctest. CI runs exactly this.
#
#   contrib/test.sh              everything
#   contrib/test.sh -R e2e       only tests whose name matches (ctest -R)
#
# Environment: BUILD_DIR (default build-test), JOBS (default: CPU count).
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
build=${BUILD_DIR:-build-test}
jobs=${JOBS:-$(nproc)}

contrib/install-deps.sh

echo "test: configuring $build (Debug, ASan + UBSan)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DNUDGE_SANITIZE=ON >"$build.cmake.log" 2>&1 ||
    { cat "$build.cmake.log"; exit 1; }
echo "test: building"
cmake --build "$build" -j "$jobs" 2>&1 | grep -vE '^\[ *[0-9]+%\]|^-- ' || true
cmake --build "$build" -j "$jobs" >/dev/null

# Leaks in the daemon are bugs; glib/GMime keep one-time allocations alive
# until exit, which LeakSanitizer is told about here. (strict_string_checks
# is off: libesmtp compares EHLO keywords with strncasecmp past short ones.)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export LSAN_OPTIONS="suppressions=$src/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export NODE_PATH="/usr/share/nodejs:/usr/local/lib/nudge-node/node_modules"

# The parsers get a bounded libFuzzer run each (clang build in build-fuzz),
# seeded from the shipped rules and templates. FUZZ_SECONDS=0 skips it.
fuzz_seconds=${FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ]; then
    echo "test: fuzzing the rule loader, the audience parser, the template renderer and the email composer (${fuzz_seconds}s each)"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DNUDGE_FUZZ=ON -DNUDGE_TESTS=OFF \
        >build-fuzz.cmake.log 2>&1 || { cat build-fuzz.cmake.log; exit 1; }
    cmake --build build-fuzz -j "$jobs" --target fuzz_rules fuzz_audience fuzz_template fuzz_mime >/dev/null
    for t in fuzz_rules fuzz_audience fuzz_template fuzz_mime; do
        corpus=$(mktemp -d)
        if ! NUDGE_SRC=$src build-fuzz/tests/fuzz/$t -max_total_time="$fuzz_seconds" -max_len=4096 \
            -print_final_stats=1 -artifact_prefix=build-fuzz/ "$corpus" "tests/fuzz/corpus/$t" >"build-fuzz/$t.log" 2>&1; then
            tail -n 60 "build-fuzz/$t.log"
            echo "test: $t found a crash (input saved beside, see the log above)" >&2
            exit 1
        fi
        echo "test: $t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$t.log" | grep -o '[0-9]*$') inputs, no crash"
        rm -rf "$corpus"
    done
fi

# valgrind on a plain build (it cannot run sanitized binaries): the pure
# modules' unit tests and the offline nudgectl commands must be clean.
if [ "${VALGRIND:-1}" = 1 ]; then
    echo "test: valgrind (plain debug build in build-vg)"
    cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=Debug >build-vg.cmake.log 2>&1 ||
        { cat build-vg.cmake.log; exit 1; }
    vg_units="test_clock test_render test_http test_template test_audience test_store test_store_task
        test_email test_rules test_schedule test_outbox test_config test_snapshot test_policy test_blame
        test_evaluator test_calendar test_dispatch test_admin"
    # shellcheck disable=SC2086
    cmake --build build-vg -j "$jobs" --target nudgectl $vg_units >/dev/null
    vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
    for t in $vg_units; do
        if ! NUDGE_SRC=$src NUDGE_BUILD=$src/build-vg $vg "build-vg/tests/$t" >"build-vg/$t.vg.log" 2>&1; then
            tail -n 40 "build-vg/$t.vg.log"
            echo "test: valgrind found a problem in $t" >&2
            exit 1
        fi
    done
    $vg build-vg/nudgectl check rules >/dev/null 2>build-vg/check.vg.log ||
        { cat build-vg/check.vg.log; echo "test: valgrind: nudgectl check" >&2; exit 1; }
    echo "test: valgrind: $(echo $vg_units | wc -w) unit programs and nudgectl check are clean"
fi

echo "test: running ctest"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 900 "$@"
