// Encode throughput of the JavaScript reference (@huggingface/tokenizers) on the same corpus and
// in the same way as bench/tokenizer_bench.c: lines parsed first, encode without special tokens,
// `passes` passes, one JSON line out. usage: node tokenizer_ref.mjs TOKENIZER_DIR CORPUS.jsonl [passes]
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { Tokenizer } = await import(path.join(root, "fixtures/node/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs"));
const [dir, corpus, p] = process.argv.slice(2);
const passes = Number(p || 3);
const cfgPath = path.join(dir, "tokenizer_config.json");
const tok = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
  fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {});
const lines = fs.readFileSync(corpus, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const bytes = lines.reduce((a, s) => a + Buffer.byteLength(s, "utf8"), 0);
let first = 0, best = 1e30, tokens = 0;
for (let pass = 0; pass < passes; pass++) {
  const t0 = process.cpuUsage();
  tokens = 0;
  for (const s of lines) tokens += tok.encode(s, { add_special_tokens: false }).ids.length;
  const u = process.cpuUsage(t0);
  const dt = (u.user + u.system) / 1e6; // CPU seconds of the process (the machine is shared: wall time is noise)
  if (pass === 0) first = dt;
  if (dt < best) best = dt;
}
console.log(JSON.stringify({ impl: "js", lines: lines.length, bytes, tokens, cold_s: +first.toFixed(4), best_s: +best.toFixed(4),
  cold_MBps: +(bytes / first / 1e6).toFixed(2), best_MBps: +(bytes / best / 1e6).toFixed(2) }));
