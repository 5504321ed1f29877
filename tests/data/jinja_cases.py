"""Writes the cases of tests/data/test_jinja.sh as JSON Lines {"name", "group", "template",
"context", "now"}: every reference chat template (tests/data/templates/*.jinja and the fixtures'
tokenizer_config.json chat_template of Llama-3 and Qwen3) over many conversations with awkward
content, with and without add_generation_prompt, plus one small snippet per Jinja construct.
usage: python3 jinja_cases.py ROOT OUT.jsonl"""
import glob
import json
import os
import sys

root, out_path = sys.argv[1], sys.argv[2]
NOW = 1721952000  # 2024-07-26 00:00:00 UTC

CONTENTS = [
    "Hello!", "", "  padded both sides  ", "line1\nline2\n", "\t tabs \t",
    "unicode: héllo wörld ✓ 日本語 😀", "braces {{ x }} {% if y %} {# z #} }}", "quotes ' \" \\ \\n",
    "\u3000wide space and nbsp\u00a0", "<|im_end|> <s> [INST] fake specials", 'json {"a": [1, 2.5]}',
    "\n\nleading newlines", "<think>\nreasoning here\n</think>\n\nthe answer", "trailing newline\n",
]
SHAPES = [
    ["user", "assistant"],
    ["system", "user", "assistant"],
    ["user", "assistant", "user", "assistant"],
    ["system", "user", "assistant", "user", "assistant", "user"],
    ["user"],
    ["system", "user"],
    ["assistant", "user"],  # wrong order: templates that check alternation raise
    ["user", "user"],
]


def conversations():
    k = 0
    for si, shape in enumerate(SHAPES):
        for rot in range(3):
            msgs = []
            for role in shape:
                msgs.append({"role": role, "content": CONTENTS[k % len(CONTENTS)]})
                k += 1
            yield f"s{si}r{rot}", msgs


templates = {}
for f in sorted(glob.glob(os.path.join(root, "tests/data/templates/*.jinja"))):
    templates[os.path.basename(f)[:-6]] = (open(f, encoding="utf-8").read(), "<s>", "</s>")
for name, pkg in (("llama3_real", "tok-llama3"), ("qwen3_real", "tok-qwen3")):
    cfg = json.load(open(os.path.join(root, "fixtures/npm", pkg, "package/models/tokenizer_config.json")))
    tok = lambda t: t if isinstance(t, str) or t is None else t.get("content")
    templates[name] = (cfg["chat_template"], tok(cfg.get("bos_token")) or "", tok(cfg.get("eos_token")) or "")

cases = []
for tname, (src, bos, eos) in templates.items():
    for cname, msgs in conversations():
        for gen in (False, True):
            ctx = {"messages": msgs, "bos_token": bos, "eos_token": eos, "add_generation_prompt": gen}
            cases.append({"name": f"{tname}/{cname}/gen{int(gen)}", "group": f"jinja_template_{tname}",
                          "template": src, "context": ctx, "now": NOW})

# Qwen3's tool calls, tool results, reasoning_content and enable_thinking
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city ✓",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
qmsgs = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": 2, "f": 1.5, "ok": True, "x": None}}},
        {"name": "get_weather", "arguments": "{\"city\": \"Lyon\"}"}]},
    {"role": "tool", "content": "18C"},
    {"role": "tool", "content": "20C"},
    {"role": "assistant", "content": "Mild.", "reasoning_content": "both are mild"},
    {"role": "user", "content": "<tool_response>x</tool_response>"},
]
src, bos, eos = templates["qwen3_real"]
for i, extra in enumerate([{"tools": tools}, {}, {"enable_thinking": False}, {"tools": tools, "enable_thinking": True}]):
    for gen in (False, True):
        ctx = {"messages": qmsgs, "bos_token": bos, "eos_token": eos, "add_generation_prompt": gen, **extra}
        cases.append({"name": f"qwen3_real/tools{i}/gen{int(gen)}", "group": "jinja_template_qwen3_real_tools",
                      "template": src, "context": ctx, "now": NOW})

# one snippet per construct (context: m = messages, d = a dict, n = numbers)
CTX = {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": " Hi there "},
                    {"role": "assistant", "content": "Yo"}],
       "d": {"b": 2, "a": 1, "s": "x"}, "xs": [3, 1, 2], "s": "  Hello, World  ", "e": "", "none_v": None,
       "t": True, "f": 2.5, "ctl": "\x07\x1b[0m\u00ad\u2029\U0001d11e\x7f'\"", "nested": {"l": [{"k": "v", "on": True}, {"k": "w", "on": False}]}}
SNIPPETS = {
    "output_and_text": "a{{ 'b' }}c{{ 1 }}{{ 2.5 }}{{ t }}{{ none_v }}{{ undefined_name }}d",
    "comment": "a{# note #}b {#- trimmed -#} c",
    "whitespace_control": "x  \n  {%- if t -%}  \n  y  \n  {%- endif -%}  \n z {{- ' w ' -}} v",
    "trim_lstrip_blocks": "a\n  {% if t %}\n    b\n  {% endif %}\n  {# c #}\nd\n",
    "if_elif_else": "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %},{% endfor %}",
    "for_loop_vars": "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem.role if loop.previtem is defined else '-' }}/{{ loop.nextitem.role if loop.nextitem is defined else '-' }};{% endfor %}",
    "for_else": "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in xs %}{{ x }}{% else %}no{% endfor %}",
    "for_unpack_items": "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d | items %}{{ k }}{% endfor %}",
    "for_dict_keys": "{% for k in d %}{{ k }}{% endfor %}",
    "for_string_chars": "{% for c in 'héllo' %}{{ c }}.{% endfor %}{% for c in '' %}x{% else %}none{% endfor %}",
    "for_filter": "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{% endfor %}{% for k, v in d.items() if k != 'b' %}{{ k }}{{ v }}{% endfor %}",
    "break_continue": "{% for x in [1, 2, 3, 4, 5] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "set_scoping": "{% set a = 1 %}{% for x in xs %}{% set a = x %}{% endfor %}{{ a }}",
    "set_block": "{% set b %}in {{ 'block' }}{% endset %}[{{ b }}]",
    "namespace": "{% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.found }} {{ ns.n }}",
    "macro": "{% macro tag(name, body='x') %}<{{ name }}>{{ body }}</{{ name }}>{% endmacro %}{{ tag('a') }}{{ tag('b', 'y') }}{{ tag('c', body='z') }}",
    "literals": "{{ 'single' }}{{ \"double\" }}{{ 'esc\\n\\t\\'q\\'' }}{{ 42 }}{{ 3.25 }}{{ -7 }}{{ true }}{{ True }}{{ false }}{{ none }}{{ [1, 'a', [2]] }}{{ {'k': 'v', 'n': 1} }}",
    "attribute_subscript": "{{ messages[0].role }}{{ messages[1]['content'] }}{{ d['a'] }}{{ d.b }}{{ messages[-1].content }}{{ nested.l[1].k }}",
    "slicing": "{{ xs[1:] }}{{ xs[:2] }}{{ xs[::-1] }}{{ xs[::2] }}{{ xs[-2:] }}{{ messages[1:] | length }}{{ s[2:7] }}{{ 'héllo'[1:4] }}{{ 'abc'[::-1] }}",
    "in_not_in": "{{ 'ell' in 'hello' }}{{ 3 in xs }}{{ 'a' in d }}{{ 'z' not in d }}{{ 9 not in xs }}",
    "tests": "{{ d is defined }}{{ zz is defined }}{{ zz is undefined }}{{ none_v is none }}{{ s is string }}{{ d is mapping }}{{ xs is iterable }}{{ 3 is odd }}{{ 4 is even }}{{ f is number }}{{ d is not mapping }}{{ xs is sequence }}",
    "logic": "{{ t and 'yes' }}{{ e or 'fallback' }}{{ not t }}{{ not e and t }}{{ (1 < 2) and (2 >= 2) and (3 != 4) }}{{ 1 > 2 or 'x' == 'y' }}",
    "arithmetic": "{{ 1 + 2 }} {{ 7 - 10 }} {{ 3 * 4 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 1.5 + 1 }} {{ [1] + [2] }}",
    "concat": "{{ 'a' ~ 1 ~ t }}{{ 'x' + 'y' }}",
    "conditional_expr": "{{ 'y' if t else 'n' }}{{ 'y' if e else 'n' }}{{ 'only' if t }}",
    "filter_trim_length": "[{{ s | trim }}][{{ s | length }}][{{ xs | length }}][{{ d | length }}][][{{ '  héllo ' | trim | length }}]",
    "filter_tojson": "{{ d | tojson }}{{ xs | tojson }}{{ 'q\"\\\\ ✓\\n' | tojson }}{{ nested | tojson }}{{ none_v | tojson }}{{ f | tojson }}{{ nested | tojson(indent=2) }}",
    "filter_string_case": "{{ 5 | string }}{{ s | upper }}{{ s | lower }}{{ 'hello world' | title }}{{ 'hello' | capitalize }}",
    "filter_default": "{{ zz | default('dflt') }}{{ e | default('dflt') }}{{ e | default('dflt', true) }}{{ d.a | default(9) }}",
    "filter_first_last_join": "{{ xs | first }}{{ xs | last }}{{ xs | join('-') }}{{ messages | map(attribute='role') | join(', ') }}{{ xs | reverse | join }}",
    "filter_replace": "{{ s | replace('l', 'L') }}{{ 'aaa' | replace('a', 'b', 2) }}",
    "filter_select_reject": "{{ nested.l | selectattr('on') | map(attribute='k') | join }}{{ nested.l | rejectattr('on') | map(attribute='k') | join }}{{ messages | selectattr('role', 'equalto', 'user') | list | length }}{{ messages | rejectattr('role', 'equalto', 'system') | map(attribute='role') | join }}",
    "string_methods": "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ '\\n\\nab\\n'.lstrip('\\n') }}][{{ s.startswith('  He') }}][{{ s.endswith('x') }}][{{ 'a,b,,c'.split(',') }}][{{ ' a  b '.split() }}][{{ 'a-b-c'.split('-', 1) }}][{{ 'hi you'.title() }}][{{ 'ab'.upper() }}{{ 'AB'.lower() }}][{{ 'a.b'.replace('.', '/') }}]",
    "dict_methods": "{{ d.keys() | list }}{{ d.values() | list }}{{ d.get('a') }}{{ d.get('zz', 'no') }}{{ d.items() | list }}",
    "split_index": "{{ 'x</think>\\n\\ny'.split('</think>')[-1].lstrip('\\n') }}|{{ 'x</think>y'.split('</think>')[0] }}",
    "raise_exception": "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}",
    "strftime_now": "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%B %d') }}",
    "range": "{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}",
    "nested_loops": "{% for m in messages %}{% for x in xs %}{% if loop.first %}{{ m.role | upper }}{{ x }}{% endif %}{% endfor %}{% endfor %}",
    "generation_tag": "{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}{{ m.content }}!{% endgeneration %}\n{% else %}{{ m.role }}\n{% endif %}{% endfor %} x {%- generation -%} y {%- endgeneration %}",
    # @huggingface/jinja departs from Python here (str.strip(chars) ignores chars, JS's %, capitalize
    # keeps the rest, UTF-16 length, no string <=): ftune follows Python Jinja2
    "python_str_methods": "[{{ 'xxhixx'.strip('x') }}][{{ '\t a\n'.lstrip('\n') }}][{{ 'ab\n\n'.rstrip('\n') }}]",
    "python_arithmetic": "{{ -7 % 3 }} {{ 7 % -3 }} {{ -7.5 % 2 }}",
    "python_capitalize_length": "{{ 'hELLO wORLD' | capitalize }} {{ '😀x' | length }}",
    "python_string_compare": "{{ 'yes' if 'x' <= 'y' }}{{ 'b' > 'a' and 'ok' }}{{ 'no' if 'B' >= 'a' else 'ok' }}",
    "python_chained_compare": "{{ 'y' if 3 > 2 > 1 else 'n' }}{{ 'y' if 1 < 3 < 2 else 'n' }}",
    "python_crlf_newlines": "{% if t %}\r\nx\r\n{% endif %}\r\ny\rz\r\n",
    "python_scoping": "{% for x in xs %}{% if loop.first %}{% set a = 'A' %}{% endif %}[{{ a }}]{% endfor %}{% if t %}{% set b = 'B' %}{% endif %}{{ b }}{% set g = 'G' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}",
    "python_filters_hf_lacks": "{{ 'abc' | list | length }}{{ ['a', 'b'] | map('upper') | join }}",
    "tojson_sort_keys": "{{ {'b': 1, 'a': [1, {'z': 0, 'y': none}]} | tojson(sort_keys=true) }}",
    "python_escapes_undefined_loop": "{{ 'a\\\nb \\x41\\u00e9\\101' }}{% for x in nothing %}x{% else %}empty{% endfor %}",
    # Python raises where @huggingface/jinja renders: so must ftune
    "python_str_plus_int": "{{ 'n' + 1 }}",
    "python_int_plus_str": "{{ 1 + 'n' }}",
    "unary_then_filter": "{{ -3|abs }} {{ -(3|abs) }} {{ (-3)|abs }} {{ - -3|abs }} {{ -f|abs }} {{ +xs[0]|string }} {{ -2 is number }} {{ -2**2 }} {{ not -1|abs }}",
    "int_power": "{{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 3 ** 39 }} {{ 2 ** -1 }} {{ 0 ** 0 }} {{ (-1) ** 1000000000001 }} {{ 1.5 ** 2 }}",
    "filter_int": "{{ '1.5' | int }} {{ ' -12 ' | int }} {{ '+7' | int }} {{ '1e3' | int }} {{ '-2.9' | int }} {{ 'abc' | int }} {{ 'abc' | int(5) }} {{ '' | int(default=3) }} {{ 'nan' | int }} {{ '0x1A' | int }} {{ '5.' | int }} {{ '.5' | int }} {{ 2.9 | int }} {{ -2.9 | int }} {{ t | int }} {{ none_v | int }} {{ xs | int(9) }} {{ '\t8\n' | int }} {{ '1 2' | int }}",
    "map_attribute_default": "{{ nested.l | map(attribute='k', default='n') | join }} {{ messages | map(attribute='name', default='n') | join }} {{ messages | map(attribute='name', default=none) | list | length }}",
    "tojson_indent": "{{ xs | tojson(indent=1) }}{{ xs | tojson(sort_keys=true, indent=2) }}",
    # unknown keyword arguments and extra positionals raise in Python (TypeError)
    "python_kwarg_filter": "{{ 'ab' | trim(foo=1) }}",
    "python_kwarg_join": "{{ xs | join(x=1) }}",
    "python_kwarg_method": "{{ 'ab'.strip(chars='a') }}",
    "python_kwarg_dict_get": "{{ d.get('a', default=1) }}",
    "python_kwarg_macro": "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, b=2) }}",
    "python_kwarg_macro_twice": "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, a=2) }}",
    "python_kwarg_function": "{{ range(3, step=1) | list }}",
    "python_kwarg_test": "{{ 3 is odd(x=1) }}",
    "python_extra_positional": "{{ 'ab' | upper(1) }}",
    "python_pow_zero_negative": "{{ 0 ** -1 }}",
    "python_pow_float_zero_negative": "{{ 0.0 ** -2.5 }}",
    "python_pow_overflow": "{{ 2.0 ** 10000 }}",
    "python_pow_overflow_int_float": "{{ 10 ** 400.0 }}",
    "python_map_attribute_and_filter": "{{ xs | map('string', attribute='x') | list }}",
    # Python's full case mappings (SpecialCasing: ß -> SS, ŉ -> ʼN, ﬁ -> FI, İ lower -> i + U+0307),
    # titlecase (ǆ -> ǅ), and str.lower's Final_Sigma rule (CPython's handle_capital_sigma: Σ is ς
    # after a cased letter and case-ignorables, unless case-ignorables and a cased letter follow);
    # Jinja2's title filter is not str.title(): it upper()s the first code point of each run between
    # [-\s({[<] and lower()s the rest as a string of its own
    "python_case_special": "{{ 'ß straße'|upper }} {{ 'ŉ ﬁ ΐ ﬃ և'.upper() }} {{ 'İx'|lower }} {{ 'İ'.lower()|length }} {{ 'ǆemal ǅ ǈ'.title() }} {{ 'ﬁsh ßa ǆx'|title }} {{ 'ß'.capitalize() }} {{ 'ǆ'|capitalize }} {{ 'ßΣ İ ǅ ﬁ'.swapcase() }} {{ 'ᾳ ᾼ'.upper() }} {{ 'ᾳ'.title() }}",
    "python_final_sigma": "{{ 'ΑΣ'.lower() }} {{ 'ΑΣ'|lower }} {{ 'ΑΣ Σ ΑΣΑ Α.Σ. ΑΣ.Α Α\\'Σ ΣΑΣ Α\u0345Σ 1Σ ΑΣ\u0301'.lower() }} {{ 'ΑΣ ΟΔΟΣ'.title() }} {{ 'ΑΣ ΑΣΣ'|title }} {{ 'ΟΔΟΣ'|capitalize }} {{ 'ΑΣ'.swapcase() }} {{ 'Σ'|lower }}",
    "python_title_words": "{{ \"they're 1st-class (x) a.b\".title() }}|{{ \"they're 1st-class (x) [y] {z} <w> a\\u3000b\\x1cc a/b ǆx\"|title }}|{{ 'hELLO wORLD ǅ'.capitalize() }}|{{ 'Ab ǅ Ⓐⓐ ª'.swapcase() }}|{{ ''.title() }}{{ ''|capitalize }}",
    # Python's str() of values, what {{ }}, ~, join, the string filters and the lower/upper tests
    # print: None, True, False; containers as repr (strings quoted as Python quotes them, escapes
    # and non-printable code points as Python writes them, tuples, dict views, Undefined,
    # Namespace, Macro); floats as Python's shortest repr
    "python_str_none_bool": "{{ none }}|{{ none_v }}|{{ t }}|{{ not t }}|{{ none ~ t }}|{{ none|string }}|{{ t|string }}|{{ zz }}|{{ zz ~ 'x' }}|{{ zz|string }}|{{ [1, 2]|join(none) }}|{{ 'n' if none_v is none }}",
    "python_repr_containers": "{{ [1, 'a', none, true, 1.5] }}|{{ {'a': 1, 'b': [none]} }}|{{ d }}|{{ xs }}|{{ nested }}|{{ messages[:1] }}|{{ [[], {}, [[1]], {'k': {'j': false}}] }}|{{ [zz] }}|{{ {'u': zz, 'e': ''} }}|{{ [-0.0, 2 ** 62] }}",
    "python_repr_quotes": r"""{{ ["it's", 'say "hi"', 'both \' and "', '', 'plain', "'", '"'] }}|{{ {"k'": "v\""} }}""",
    "python_repr_escapes": r"""{{ ['a\\b\n', 'tab\there', 'cr\r', '\x00\x01\x1f\x7f', '\x80\x9f\xa0\xad', 'é ✓ 😀 日本', '\u200b\u2028\ufeff\ue000', '\U000e0001\U0010ffff\U0001f600', '\u3000 \u00a0\u0378', '\v\f\a\b'] }}|{{ [ctl] }}""",
    "python_repr_tuples": "{{ ('a', 2) }}|{{ ('a',) }}|{{ () }}|{{ (1, ('x', none), [true]) }}|{{ [('a', 1)] }}|{{ ('a', 'b')[1:] }}|{{ ('a', 'b')[:1] }}|{{ ('a', 2) == ['a', 2] }}|{{ ('a',) + ('b',) }}|{{ ('a', 'b')|list }}|{{ ('a', 2)|length }}|{{ ('a', 'b')|join }}|{{ ['a', 2] in [('a', 2)] }}",
    "python_repr_dict_views": "{{ d.keys() }}|{{ d.values() }}|{{ d.items() }}|{{ d.items()|list }}|{{ d.keys()|list }}|{% for k, v in d.items() %}{{ (k, v) }}{% endfor %}|{{ d|items|list }}|{{ {}.items() }}|{{ d.values()|length }}",
    "python_repr_floats": "{{ 1.0 }}|{{ 0.1 + 0.2 }}|{{ 1 / 3 }}|{{ 10.0 ** 16 }}|{{ 10.0 ** 15 }}|{{ 10.0 ** -5 }}|{{ 0.0001 }}|{{ -0.0 }}|{{ 2.5 }}|{{ 10.0 ** 300 * 10.0 ** 300 }}|{{ -(10.0 ** 300 * 10.0 ** 300) }}|{{ 10.0 ** 300 * 10.0 ** 300 - 10.0 ** 300 * 10.0 ** 300 }}|{{ [1.0, 0.1 ** 7, 2 ** -1, 7 / 2, 2.0 ** -1074] }}|{{ 123456789.0 * 1000000000000 }}|{{ 2.0 ** 70 }}|{{ f }}|{{ 1.5 ~ '' }}|{{ 100.0 }}|{{ 10.0 ** 22 }}",
    "python_repr_string_filters": "{{ 5|upper }}|{{ none|lower }}|{{ t|upper }}|{{ [1, 'a']|upper }}|{{ 12|replace('1', 'x') }}|{{ 5|replace(5, none) }}|{{ 5|trim }}|{{ none|title }}|{{ xs|capitalize }}|{{ zz|upper }}|{{ d|string }}|{{ [none, t]|join(', ') }}|{{ [[1, 'a'], ('b',)]|join(';') }}|{{ 'x' ~ [1] ~ {'a': none} }}|{{ 'a' is lower }}{{ '1' is lower }}{{ 5 is upper }}{{ 'ǅ' is upper }}{{ none is upper }}",
    "python_repr_namespace_macro": "{% set ns = namespace(a=1, b='x', c=none) %}{{ ns }}|{% macro m() %}x{% endmacro %}{{ m }}|{{ [m] }}|{{ {'m': m} }}",
    "python_pow_floats": "{{ 2 ** -2 }} {{ (-8) ** -1 }} {{ 0.0 ** 0 }} {{ 0 ** 0.0 }} {{ 1.5 ** 2 }} {{ (-2.0) ** 3 }} {{ 10.0 ** -400 }} {{ (-0.5) ** 2.0 }} {{ 4 ** 0.5 }}",
    "unicode_passthrough": "«{{ 'ünï ✓ 😀' }}» {{ '日本' ~ '語' }} {{ 'éx' | length }}",
}
for name, src in SNIPPETS.items():
    cases.append({"name": f"snippet/{name}", "group": f"jinja_snippet_{name}", "template": src, "context": CTX, "now": NOW})

# every code point that Python's str.upper(), lower() or title() changes, one word each, through
# every case function (code points that this Python's Unicode lacks are not among them)
changed = " ".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and
                   (chr(c).upper(), chr(c).lower(), chr(c).title()) != (chr(c),) * 3)
cases.append({"name": "snippet/python_case_all", "group": "jinja_snippet_python_case_all",
              "template": "{{ s.upper() }}|{{ s.lower() }}|{{ s.title() }}|{{ s.capitalize() }}|"
                          "{{ s.swapcase() }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ s|capitalize }}",
              "context": {"s": changed}, "now": NOW})

with open(out_path, "w", encoding="utf-8") as f:
    for c in cases:
        f.write(json.dumps(c, ensure_ascii=False) + "\n")
print(f"{len(cases)} cases, {len(templates)} templates, {len(SNIPPETS)} snippets", file=sys.stderr)
