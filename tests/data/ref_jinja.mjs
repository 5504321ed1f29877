// The reference for ftune's Jinja interpreter: renders every case of a JSON Lines file
// {"name", "template", "context", "now"} with @huggingface/jinja (trim_blocks + lstrip_blocks, as
// transformers' apply_chat_template) and writes {"name", "out"} or {"name", "error"} per line.
// strftime_now(fmt) formats the case's fixed time `now` (UTC) instead of the clock, as ftune does.
// usage: node ref_jinja.mjs CASES.jsonl OUT.jsonl
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { Template } = await import(path.join(root, "fixtures/node/node_modules/@huggingface/jinja/dist/index.js"));

// strftime_now reads `new Date()`: a Date whose clock is the case's time, in UTC
process.env.TZ = "UTC";
const RealDate = Date;
let fixedNow = 0;
globalThis.Date = class extends RealDate {
  constructor(...a) { super(...(a.length ? a : [fixedNow * 1000])); }
  static now() { return fixedNow * 1000; }
};

const [casesPath, outPath] = process.argv.slice(2);
const out = [];
for (const line of fs.readFileSync(casesPath, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  try {
    fixedNow = c.now || 0;
    out.push(JSON.stringify({ name: c.name, out: new Template(c.template).render(c.context || {}) }));
  } catch (e) {
    out.push(JSON.stringify({ name: c.name, error: String(e.message || e) }));
  }
}
fs.writeFileSync(outPath, out.join("\n") + "\n");
