#!/bin/sh
# Runs every suite against $BUILD (default build/) and ends with the line
# "N passed, N failed". Exit status is 0 only if nothing failed.
#   unit:        $BUILD/test/test_* (cmocka)
#   integration: test/integration/*.test.mjs (node:test; real binary, fake
#                upstream, curl and the official openai SDK)
# TEST_FILTER=name limits the integration run to files matching name.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export PARROT_TEST_BIN="$PWD/$BUILD/parrot"
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== unit tests ($BUILD)"
for t in "$BUILD"/test/test_*; do
    [ -x "$t" ] || continue
    "$t" >"$tmp/unit.out" 2>&1
    rc=$?
    cat "$tmp/unit.out"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$tmp/unit.out" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$tmp/unit.out" | tail -n 1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    # A crash before cmocka's summary still counts as a failure.
    [ $rc -ne 0 ] && [ -z "$f" ] && failed=$((failed + 1)) && echo "!! $t exited $rc"
done

echo "== fuzz corpus replay ($BUILD)"
for t in "$BUILD"/fuzz/replay_fuzz_*; do
    [ -x "$t" ] || continue
    m=${t##*/replay_fuzz_}
    if "$t" "test/fuzz/corpus/$m"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "!! $t failed"
    fi
done

echo "== integration tests ($BUILD)"
files=$(ls test/integration/*.test.mjs | grep -- "${TEST_FILTER:-.}")
(cd test && node --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tmp/tap.out" \
    $(echo "$files" | sed 's|^test/||'))
rc=$?
p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$tmp/tap.out" | tail -n 1)
f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$tmp/tap.out" | tail -n 1)
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-0}))
[ $rc -ne 0 ] && [ "${f:-0}" -eq 0 ] && failed=$((failed + 1)) && echo "!! node --test exited $rc"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
