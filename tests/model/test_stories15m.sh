#!/usr/bin/env bash
# The real-model fixture: stories15M (models/stories15M, built by `make fixtures` through
# `ftune convert llama2c`). Known values from the issue: the 15 ids below give loss 0.11262 (±1e-4)
# and next id 2296; greedy generation from the first 5 continues with 12 known ids.
set -uo pipefail
M=$FT_ROOT/models/stories15M
if [ ! -f "$M/config.json" ]; then
    echo "FAIL stories15M fixture: $M is missing (run 'make fixtures')"
    exit 1
fi
out=$("$FTUNE" logprobs --model "$M" --ids 1,9038,2501,263,931,29892,727,471,263,2217,7826,4257,365,2354,29889 2>&1)
rc=$?
loss=$(printf '%s\n' "$out" | sed -n 's/^loss //p')
next=$(printf '%s\n' "$out" | sed -n 's/^next //p')
if [ $rc -eq 0 ] && [ -n "$loss" ] && "$PY" -c "import sys; sys.exit(0 if abs(float('$loss') - 0.11262) <= 1e-4 else 1)"; then
    echo "PASS stories15M loss $loss (want 0.11262 +- 1e-4)"
else
    echo "FAIL stories15M loss: exit $rc, output: $out"
fi
if [ "$next" = 2296 ]; then echo "PASS stories15M next 2296"; else echo "FAIL stories15M next: got '$next', want 2296"; fi

want="29892 727 471 263 2217 7826 4257 365 2354 29889 2296 18012"
got=$("$FTUNE" generate --model "$M" --prompt-ids 1,9038,2501,263,931 --max-new-tokens 12 2>&1)
if [ "$got" = "$want" ]; then
    echo "PASS stories15M greedy generation"
else
    echo "FAIL stories15M greedy generation: got '$got', want '$want'"
fi
