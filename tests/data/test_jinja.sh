#!/usr/bin/env bash
# ftune's Jinja interpreter against two references, byte for byte: every reference chat template
# (tests/data/templates, the fixtures' Llama-3 and Qwen3 tokenizer_config.json) over many
# conversations with awkward content (unicode, braces, quotes, empty strings, whitespace, fake
# special tokens), with and without add_generation_prompt, Qwen3 with tools / tool calls /
# reasoning_content, and one snippet per Jinja construct (tests/data/jinja_cases.py). The
# references are @huggingface/jinja (tests/data/ref_jinja.mjs) and Python's Jinja2 set up as
# transformers' apply_chat_template sets it up (tests/data/ref_jinja.py). Python is the one ftune
# must equal wherever it renders, since transformers renders training data with it; where
# @huggingface/jinja departs from it (str.strip(chars), %, capitalize, UTF-16 lengths, string
# comparison, True/None and containers printed as Python's str(), case mappings) ftune follows
# Python. A case where both references raise must raise in ftune too, with the same message if
# raise_exception; one where only Python raises (a TypeError: 'a' + 1, an unknown keyword argument)
# must raise in ftune.
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
node tests/data/ref_jinja.mjs "$T/cases.jsonl" "$T/hf.jsonl" || { echo "FAIL jinja_reference: node failed"; exit 1; }
"$PY" tests/data/ref_jinja.py "$T/cases.jsonl" "$T/py.jsonl" ||
    { echo "FAIL jinja_python_reference: Python Jinja2 failed (python3-jinja2, make deps)"; exit 1; }
"$BIN" --render "$T/cases.jsonl" "$T/ftune.jsonl" || { echo "FAIL jinja_render: ftune's renderer failed"; exit 1; }
"$PY" - "$T/cases.jsonl" "$T/hf.jsonl" "$T/py.jsonl" "$T/ftune.jsonl" <<'PYEOF'
import json, sys
cases, hf, py, got = ([json.loads(l) for l in open(p, encoding="utf-8") if l.strip()] for p in sys.argv[1:5])
if not (len(cases) == len(hf) == len(py) == len(got)):
    print(f"FAIL jinja_outputs: {len(cases)} cases, {len(hf)} + {len(py)} reference, {len(got)} ftune outputs"); sys.exit(1)

def diff(a, b):  # b: Python's output
    k = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return f"differs at char {k}: ftune {a[max(0, k - 30):k + 40]!r}, reference {b[max(0, k - 30):k + 40]!r}"

groups = {}
for c, h, p, g in zip(cases, hf, py, got):
    st = groups.setdefault(c["group"], {"both": 0, "py": 0, "raised": 0, "pyraised": 0, "bad": None})
    why = None
    if "error" in h and "error" in p:  # both references raise: so must ftune, with the message
        if "error" in g and (h["error"] in g["error"] or "raise_exception" not in g["error"]):
            st["raised"] += 1
        else: why = f"the references raise {h['error']!r}, ftune gives {str(g.get('error', g.get('out')))[:200]!r}"
    elif "error" in p:  # where @huggingface/jinja renders what Python refuses
        if "error" in g: st["pyraised"] += 1
        else: why = f"Python Jinja2 raises {p['error']!r}, ftune renders {g['out'][:200]!r}"
    elif "error" in g:
        why = f"ftune raises {g['error']!r}"
    elif g["out"] == p["out"]:
        if h.get("out") == p["out"]: st["both"] += 1
        else: st["py"] += 1  # where @huggingface/jinja departs from Python
    else:
        why = diff(g["out"], p["out"])
    if why and not st["bad"]: st["bad"] = (c["name"], why)
fails = 0
for name, st in groups.items():
    if st["bad"]:
        fails += 1
        print(f"FAIL {name}: {st['bad'][0]}: {st['bad'][1]}")
    else:
        parts = [f"{st['both']} byte-equal to Python Jinja2 and @huggingface/jinja"]
        if st["py"]: parts.append(f"{st['py']} equal to Python Jinja2 where @huggingface/jinja differs")
        if st["raised"]: parts.append(f"{st['raised']} raise as both references do")
        if st["pyraised"]: parts.append(f"{st['pyraised']} raise as Python Jinja2 does")
        print(f"PASS {name} ({', '.join(parts)})")
sys.exit(1 if fails else 0)
PYEOF
