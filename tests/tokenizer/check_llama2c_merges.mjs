// The converted llama2.c tokenizer.json must hold Llama-2's vocabulary and its 61,249 merges in
// the very order llama-tokenizer-js@1.2.2 ships them (vocab as base64, merges as id pairs).
// usage: node check_llama2c_merges.mjs TOKENIZER.json   -- prints PASS/FAIL lines
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const llama = (await import(path.join(root, "fixtures/npm/llama-tokenizer-js/package/llama-tokenizer.js"))).default;
const j = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
let fail = 0;
const vocabBad = Object.entries(j.model.vocab).filter(([k, v]) => llama.vocabById[v] !== k);
const nv = Object.keys(j.model.vocab).length;
if (vocabBad.length || nv !== llama.vocabById.length) {
  fail = 1;
  console.log(`FAIL tok_llama2c_vocab: ${vocabBad.length} ids differ (${nv} vs ${llama.vocabById.length} tokens)`);
} else console.log(`PASS tok_llama2c_vocab: ${nv} tokens identical to llama-tokenizer-js`);
const theirs = [...llama.merges.entries()].sort((a, b) => a[1] - b[1]).map((x) => x[0]);
const ours = j.model.merges;
let first = -1;
for (let i = 0; i < Math.max(ours.length, theirs.length); i++) if (ours[i] !== theirs[i]) { first = i; break; }
if (first >= 0) {
  fail = 1;
  console.log(`FAIL tok_llama2c_merges: merge ${first} is ${JSON.stringify(ours[first])}, llama-tokenizer-js has ${JSON.stringify(theirs[first])} (${ours.length} vs ${theirs.length})`);
} else console.log(`PASS tok_llama2c_merges: ${ours.length} merges in the same order as llama-tokenizer-js`);
process.exit(fail);
