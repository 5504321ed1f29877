// The independent reference for ftune's instruction data: reads a dataset file in one of the
// formats, turns each record into messages (its own code, not ftune's), renders them with a Jinja
// chat template through @huggingface/jinja (trim_blocks + lstrip_blocks, as transformers'
// apply_chat_template) and tokenizes the result with @huggingface/tokenizers
// (add_special_tokens=false, as apply_chat_template(tokenize=True) does).
//
// usage: node ref_chat.mjs TOKENIZER_DIR TEMPLATE TYPE DATA N OUT.jsonl [--gen] [--always-gen S]
//   TEMPLATE  a file holding Jinja source, or "config" for tokenizer_config.json's chat_template
//   TYPE      alpaca | dolly | flan | sharegpt | chat_template | completion
//   --gen     render the conversation without its last assistant reply, add_generation_prompt=true
//   --always-gen S  the template appends the assistant header S even without
//             add_generation_prompt (the @lenml Llama-3 file does): strip S from the end
//   --check PREVIEW NAME EOT JOIN  instead of writing OUT, compare with `ftune preview --jsonl`
//             output: ids equal; every label is -100 or its id; the runs of labelled tokens are
//             one per assistant turn and each decodes to content + JOIN + EOT (whitespace-trimmed
//             at both ends: SentencePiece decoding drops the leading space); prints PASS/FAIL NAME.
// Writes per record {"ids": [...], "text": "...", "trained": ["content", ...]}.
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const mods = path.join(root, "fixtures/node/node_modules/@huggingface");
const { Tokenizer } = await import(path.join(mods, "tokenizers/dist/tokenizers.mjs"));
const { Template } = await import(path.join(mods, "jinja/dist/index.js"));

const args = process.argv.slice(2);
const [dir, tplArg, type, dataPath, nStr, outPath] = args;
const gen = args.includes("--gen");
const ag = args.indexOf("--always-gen");
const alwaysGen = ag >= 0 ? JSON.parse(args[ag + 1]) : null;
const tj = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
const cfgPath = path.join(dir, "tokenizer_config.json");
const cfg = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
const tok = new Tokenizer(tj, cfg);
const tokStr = (t) => (t == null ? "" : typeof t === "string" ? t : t.content);
const bos = tokStr(cfg.bos_token), eos = tokStr(cfg.eos_token);
const source = tplArg === "config" ? cfg.chat_template : fs.readFileSync(tplArg, "utf8");
const template = new Template(source);

// the records
const raw = fs.readFileSync(dataPath, "utf8");
const recs = raw.trimStart().startsWith("[") ? JSON.parse(raw) : raw.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const roleOf = { human: "user", user: "user", gpt: "assistant", assistant: "assistant", system: "system" };
function messages(r) {
  const inst = (sys, ins, inp, out) => [
    ...(sys ? [{ role: "system", content: sys }] : []),
    { role: "user", content: inp ? ins + "\n\n" + inp : ins },
    { role: "assistant", content: out },
  ];
  switch (type) {
    case "alpaca": return inst(r.system, r.instruction, r.input, r.output);
    case "dolly": return inst(null, r.instruction, r.context, r.response);
    case "flan": return inst(null, r.inputs, null, r.targets);
    case "sharegpt": return r.conversations.map((m) => ({ role: roleOf[m.from], content: m.value }));
    case "chat_template": return (r.messages || r.conversations).map((m) => ({ role: m.role, content: m.content }));
    default: throw new Error("unknown type " + type);
  }
}

const out = [];
const n = Math.min(parseInt(nStr, 10), recs.length);
for (let i = 0; i < n; i++) {
  const r = recs[i];
  if (type === "completion") {
    const ids = tok.encode(r.text).ids.concat([tok.token_to_id(eos)]);
    out.push(JSON.stringify({ ids, text: r.text, trained: [] }));
    continue;
  }
  let msgs = messages(r);
  if (gen) msgs = msgs.slice(0, msgs.length - 1);
  let text = template.render({ messages: msgs, bos_token: bos, eos_token: eos, add_generation_prompt: gen });
  if (alwaysGen && !gen) {
    if (!text.endsWith(alwaysGen)) throw new Error("record " + i + ": expected the template to end with the assistant header");
    text = text.slice(0, text.length - alwaysGen.length);
  }
  const ids = tok.encode(text, { add_special_tokens: false }).ids;
  const trained = msgs.filter((m) => m.role === "assistant").map((m) => m.content);
  out.push(JSON.stringify({ ids, text, trained }));
}
const ck = args.indexOf("--check");
if (ck < 0) {
  fs.writeFileSync(outPath, out.join("\n") + "\n");
  process.exit(0);
}
const [prevPath, name, eotArg, joinArg] = args.slice(ck + 1, ck + 5);
const eot = eotArg === "EOS" ? eos : eotArg;
const join = joinArg || "";
const prev = fs.readFileSync(prevPath, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const fail = (why) => { console.log(`FAIL ${name}: ${why}`); process.exit(1); };
if (prev.length !== out.length) fail(`preview has ${prev.length} samples, the reference ${out.length}`);
let nTok = 0, nLab = 0;
for (let i = 0; i < out.length; i++) {
  const ref = JSON.parse(out[i]), p = prev[i];
  const a = p.input_ids, b = ref.ids;
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  if (k < a.length || k < b.length)
    fail(`sample ${i}: ids differ at ${k} (ftune ${JSON.stringify(a.slice(k, k + 5))}, reference ${JSON.stringify(b.slice(k, k + 5))}) in ${JSON.stringify(ref.text.slice(0, 200))}`);
  if (p.labels.length !== a.length) fail(`sample ${i}: ${p.labels.length} labels for ${a.length} ids`);
  const runs = [];
  for (let t = 0; t < a.length; t++) {
    if (p.labels[t] !== -100 && p.labels[t] !== a[t]) fail(`sample ${i}: label ${t} is ${p.labels[t]}, neither -100 nor the id ${a[t]}`);
    if (p.labels[t] === -100) continue;
    nLab++;
    if (t > 0 && p.labels[t - 1] !== -100) runs[runs.length - 1].push(a[t]);
    else runs.push([a[t]]);
  }
  nTok += a.length;
  if (type === "completion") {
    if (runs.length !== 1 || runs[0].length !== a.length) fail(`sample ${i}: a text sample must be trained on every token`);
    continue;
  }
  if (runs.length !== ref.trained.length)
    fail(`sample ${i}: ${runs.length} trained spans for ${ref.trained.length} assistant turns: ${JSON.stringify(runs.map((r) => tok.decode(r)))}`);
  for (let r = 0; r < runs.length; r++) {
    const got = tok.decode(runs[r], { skip_special_tokens: false }).trim();
    const want = (ref.trained[r].trim() + join + eot).trim();
    if (got !== want) fail(`sample ${i} turn ${r}: trained span decodes to ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
}
console.log(`PASS ${name} (${out.length} samples, ${nTok} tokens, ${nLab} trained)`);
