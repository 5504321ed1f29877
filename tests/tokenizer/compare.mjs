// Compare ftune's output with the reference's, line by line; prints one PASS/FAIL line.
// usage: node compare.mjs NAME ids FTUNE.txt REF.txt [SKIP.txt]   -- SKIP lines "-" are not judged
//        node compare.mjs NAME json FTUNE.jsonl REF.jsonl          -- JSON strings compared as values
//        node compare.mjs NAME roundtrip FTUNE_DECODED.jsonl REF_DECODED.jsonl CORPUS.jsonl
//          -- decode(encode(x)) == x for every line where the reference round-trips
// Exit status 1 on failure; the message names the first differing line (1-based) and both values.
import fs from "fs";
const [name, mode, a, b, c] = process.argv.slice(2);
const read = (f) => { const t = fs.readFileSync(f, "utf8").split("\n"); if (t.at(-1) === "") t.pop(); return t; };
const A = read(a), B = read(b), C = c ? read(c) : null;
let judged = 0, bad = 0, first = null;
if (A.length !== B.length) {
  console.log(`FAIL ${name}: ${A.length} lines from ftune, ${B.length} from the reference`);
  process.exit(1);
}
for (let i = 0; i < A.length; i++) {
  let ok;
  if (mode === "ids") {
    if (C && C[i] === "-") continue;
    ok = A[i] === B[i];
  } else if (mode === "json") {
    ok = JSON.parse(A[i]) === JSON.parse(B[i]);
  } else {
    const x = JSON.parse(C[i]);
    if (JSON.parse(B[i]) !== x) continue; // the reference does not round-trip this line
    ok = JSON.parse(A[i]) === x;
  }
  judged++;
  if (!ok) { bad++; if (!first) first = `line ${i + 1}: ftune ${A[i].slice(0, 200)} | reference ${(mode === "roundtrip" ? C[i] : B[i]).slice(0, 200)}`; }
}
const pct = judged ? (100 * (judged - bad) / judged).toFixed(2) : "0";
if (bad || judged === 0) console.log(`FAIL ${name}: ${judged - bad}/${judged} lines match (${pct}%); first difference ${first ?? "(none judged)"}`);
else console.log(`PASS ${name}: ${judged}/${judged} lines match (100%)`);
process.exit(bad || judged === 0 ? 1 : 0);
