// The independent reference: runs @huggingface/tokenizers (JavaScript, installed by
// tools/fetch-fixtures.sh into fixtures/node) over a corpus of JSON Lines strings.
// usage: node ref_tokenize.mjs TOKENIZER_DIR CORPUS.jsonl OUT_DIR [--llama-js]
// Writes into OUT_DIR:
//   special.txt      ids with add_special_tokens=true, one line per corpus line
//   plain.txt        ids with add_special_tokens=false
//   decode.jsonl     decode(plain ids) as a JSON string per line
//   decode_skip.jsonl decode(special ids, skip_special_tokens=true)
//   llamajs.txt      (--llama-js) llama-tokenizer-js encode(text) with BOS, "-" for lines it cannot
//                    judge (text holding <s>, </s> or <unk>: llama-tokenizer-js has no added tokens;
//                    the empty line, which it encodes as [] where HF gives [BOS])
// A directory without tokenizer_config.json is given {clean_up_tokenization_spaces: false}, the
// transformers default that ftune also uses.
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const { Tokenizer } = await import(path.join(root, "fixtures/node/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs"));

const [dir, corpus, outdir, flag] = process.argv.slice(2);
const tj = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
const cfgPath = path.join(dir, "tokenizer_config.json");
const cfg = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : { clean_up_tokenization_spaces: false };
const tok = new Tokenizer(tj, cfg);
const lines = fs.readFileSync(corpus, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const special = [], plain = [], dec = [], decSkip = [], llamajs = [];
let llama = null;
if (flag === "--llama-js") llama = (await import(path.join(root, "fixtures/npm/llama-tokenizer-js/package/llama-tokenizer.js"))).default;
const dec1 = (ids, skip) => (ids.length ? tok.decode(ids, { skip_special_tokens: skip }) : "");
for (const s of lines) {
  const a = tok.encode(s).ids, b = tok.encode(s, { add_special_tokens: false }).ids;
  special.push(a.join(" "));
  plain.push(b.join(" "));
  dec.push(JSON.stringify(dec1(b, false)));
  decSkip.push(JSON.stringify(dec1(a, true)));
  if (llama) llamajs.push(s === "" || /<s>|<\/s>|<unk>/.test(s) ? "-" : llama.encode(s, true, true).join(" "));
}
fs.mkdirSync(outdir, { recursive: true });
const w = (f, a) => fs.writeFileSync(path.join(outdir, f), a.join("\n") + "\n");
w("special.txt", special);
w("plain.txt", plain);
w("decode.jsonl", dec);
w("decode_skip.jsonl", decSkip);
if (llama) w("llamajs.txt", llamajs);
