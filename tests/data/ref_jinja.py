"""The second reference for ftune's Jinja interpreter: Python's Jinja2, set up the way transformers'
apply_chat_template sets it up (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now, and the
{% generation %} tag rendering its body). strftime_now formats the case's fixed time `now` in UTC.
Renders every case of a JSON Lines file {"name", "template", "context", "now"} and writes
{"name", "out"} or {"name", "error"} per line.
usage: python3 ref_jinja.py CASES.jsonl OUT.jsonl"""
import json
import sys
from datetime import datetime, timezone

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Generation(Extension):
    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
now = [0]
env.globals["strftime_now"] = lambda fmt: datetime.fromtimestamp(now[0], timezone.utc).strftime(fmt)

with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in f:
        if not line.strip():
            continue
        c = json.loads(line)
        now[0] = c.get("now", 0)
        try:
            r = {"name": c["name"], "out": env.from_string(c["template"]).render(**(c.get("context") or {}))}
        except Exception as e:  # the message, as HF's and ftune's errors carry it
            r = {"name": c["name"], "error": str(e)}
        out.write(json.dumps(r, ensure_ascii=False) + "\n")
