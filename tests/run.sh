#!/usr/bin/env bash
# The test runner. Runs every test binary (build/test/bin/*/test_*) and every test script
# (tests/*/test_*.sh), each of which prints "PASS name" / "FAIL name: why" lines and exits
# non-zero when anything failed. Prints each result and ends with "N passed, N failed".
# Environment for tests: FTUNE (sanitizer CLI), FTUNE_REL (optimized CLI), PY (reference Python),
# FT_ROOT (repo), FT_TMP (scratch dir, removed afterwards), FT_REF (reference outputs dir).
set -uo pipefail
cd "$(dirname "$0")/.."
export FT_ROOT=$PWD
export FTUNE=$PWD/build/test/ftune FTUNE_REL=$PWD/build/ftune PY=${PY:-/usr/bin/python3}
export FT_REF=$PWD/build/ref
export FT_TMP=$(mktemp -d /tmp/ftune-test.XXXXXX)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# Sleep rather than spin between parallel regions: the tests are not benchmarks, and spinning
# threads on a shared 2-core machine made the suite up to 10x slower.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
trap 'rm -rf "$FT_TMP"' EXIT
mkdir -p "$FT_REF"

pass=0; fail=0; failed=()
run_one() { # label, command...
    local label=$1; shift
    local log=$FT_TMP/log.$$.$RANDOM t0=$SECONDS
    "$@" >"$log" 2>&1; local rc=$?
    local p f
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
    grep -E '^(PASS|FAIL) ' "$log" | sed "s|^|  |"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "  FAIL $label: exited with status $rc"; f=1
        tail -n 20 "$log" | sed 's/^/    | /'
    elif [ "$f" -gt 0 ]; then
        grep -vE '^(PASS|FAIL) ' "$log" | tail -n 20 | sed 's/^/    | /'
    fi
    [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && { echo "  FAIL $label: reported no result"; f=1; }
    pass=$((pass + p)); fail=$((fail + f))
    [ "$f" -gt 0 ] && failed+=("$label")
    echo "[$label] $p passed, $f failed ($((SECONDS - t0))s)"
}

filter=${1:-}
# reference generators first (tests/ref/gen_*.py write into $FT_REF)
for s in tests/ref/gen_*.py; do
    [ -e "$s" ] || continue
    [ -n "$filter" ] && [[ $s != *$filter* ]] && continue
    run_one "$(basename "$s" .py)" "$PY" "$s" "$FT_REF"
done
for t in $(find build/test/bin -type f -name 'test_*' 2>/dev/null | sort) $(ls tests/*/test_*.sh 2>/dev/null | sort); do
    [ -n "$filter" ] && [[ $t != *$filter* ]] && continue
    run_one "${t#build/test/bin/}" "$t"
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
