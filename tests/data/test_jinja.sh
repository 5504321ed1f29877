#!/usr/bin/env bash
# ftune's Jinja interpreter against @huggingface/jinja, byte for byte: every reference chat
# template (tests/data/templates, the fixtures' Llama-3 and Qwen3 tokenizer_config.json) over many
# conversations with awkward content (unicode, braces, quotes, empty strings, whitespace, fake
# special tokens), with and without add_generation_prompt, Qwen3 with tools / tool calls /
# reasoning_content, and one snippet per Jinja construct (tests/data/jinja_cases.py). A case
# where the reference raises (raise_exception) must raise in ftune too, with the same message.
# One PASS/FAIL line per template and per snippet.
set -u
cd "${FT_ROOT:?}"
BIN=build/test/bin/data/test_jinja
T=$FT_TMP/jinja
mkdir -p "$T"
[ -x "$BIN" ] || { echo "FAIL jinja_binary: $BIN is missing (make check)"; exit 1; }
[ -f fixtures/node/node_modules/@huggingface/jinja/package.json ] ||
    { echo "FAIL jinja_fixtures: @huggingface/jinja is missing (make fixtures)"; exit 1; }
"$PY" tests/data/jinja_cases.py . "$T/cases.jsonl" || { echo "FAIL jinja_cases: generator failed"; exit 1; }
node tests/data/ref_jinja.mjs "$T/cases.jsonl" "$T/ref.jsonl" || { echo "FAIL jinja_reference: node failed"; exit 1; }
"$BIN" --render "$T/cases.jsonl" "$T/ftune.jsonl" || { echo "FAIL jinja_render: ftune's renderer failed"; exit 1; }
"$PY" - "$T/cases.jsonl" "$T/ref.jsonl" "$T/ftune.jsonl" <<'PYEOF'
import json, sys
cases, ref, got = ([json.loads(l) for l in open(p, encoding="utf-8") if l.strip()] for p in sys.argv[1:4])
if not (len(cases) == len(ref) == len(got)):
    print(f"FAIL jinja_outputs: {len(cases)} cases, {len(ref)} reference, {len(got)} ftune outputs"); sys.exit(1)
groups = {}
for c, r, g in zip(cases, ref, got):
    st = groups.setdefault(c["group"], {"n": 0, "raised": 0, "bad": None})
    st["n"] += 1
    if "error" in r:
        st["raised"] += 1
        if "error" not in g or r["error"] not in g["error"]:
            why = f"reference raises {r['error']!r}, ftune gives {str(g.get('error', g.get('out')))[:200]!r}"
            st["bad"] = st["bad"] or (c["name"], why)
    elif g.get("out") != r["out"]:
        a, b = g.get("out") or "", r["out"]
        k = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        why = (f"ftune error {g['error']!r}" if "error" in g else
               f"differs at char {k}: ftune {a[max(0, k - 30):k + 40]!r}, reference {b[max(0, k - 30):k + 40]!r}")
        st["bad"] = st["bad"] or (c["name"], why)
fails = 0
for name, st in groups.items():
    if st["bad"]:
        fails += 1
        print(f"FAIL {name}: {st['bad'][0]}: {st['bad'][1]}")
    else:
        print(f"PASS {name} ({st['n'] - st['raised']} renders byte-equal, {st['raised']} raise the same exception)")
sys.exit(1 if fails else 0)
PYEOF
