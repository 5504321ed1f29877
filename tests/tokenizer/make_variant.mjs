// Writes OUT_DIR/tokenizer.json (+ the source's tokenizer_config.json): a real tokenizer rewritten
// to another layout found on the Hub, so that layout is also compared with the reference.
// usage: node make_variant.mjs KIND SRC_DIR OUT_DIR
//   metaspace  (from Mistral) transformers' legacy=false SentencePiece layout: no normalizer,
//              pre-tokenizer Metaspace(prepend_scheme "first", split false), decoder Metaspace +
//              ByteFallback + Fuse. (Metaspace with split=true is not compared: the JS reference
//              keeps "▁▁" whole where the Rust library, whose MergedWithNext split ftune follows,
//              yields "▁" "▁".)
//   llama3-bos (from Llama-3) Meta's own layout: post-processor Sequence[ByteLevel,
//              TemplateProcessing adding <|begin_of_text|>].
import fs from "fs";
import path from "path";
const [kind, src, out] = process.argv.slice(2);
const j = JSON.parse(fs.readFileSync(path.join(src, "tokenizer.json"), "utf8"));
if (kind === "metaspace") {
  j.normalizer = null;
  j.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false };
  j.decoder = { type: "Sequence", decoders: [
    { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
    { type: "ByteFallback" }, { type: "Fuse" }] };
} else if (kind === "llama3-bos") {
  const bos = "<|begin_of_text|>", sp = (type_id) => ({ SpecialToken: { id: bos, type_id } });
  j.post_processor = { type: "Sequence", processors: [
    { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    { type: "TemplateProcessing", single: [sp(0), { Sequence: { id: "A", type_id: 0 } }],
      pair: [sp(0), { Sequence: { id: "A", type_id: 0 } }, sp(1), { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [128000], tokens: [bos] } } }] };
} else {
  console.error(`make_variant: unknown kind ${kind}`);
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "tokenizer.json"), JSON.stringify(j));
const cfg = path.join(src, "tokenizer_config.json");
if (fs.existsSync(cfg)) fs.copyFileSync(cfg, path.join(out, "tokenizer_config.json"));
