// Writes OUT_DIR/tokenizer.json: Mistral's tokenizer rewritten to the newer SentencePiece layout
// (transformers' legacy=false): no normalizer, pre-tokenizer Metaspace(prepend_scheme "first",
// split false), decoder Metaspace + ByteFallback + Fuse. Exercises Metaspace against the reference.
// (Metaspace with split=true is not compared: the JS reference keeps "▁▁" whole where the Rust
// library, whose MergedWithNext split ftune follows, yields "▁" "▁".)
// usage: node make_variant.mjs MISTRAL_tokenizer.json OUT_DIR
import fs from "fs";
import path from "path";
const [src, out] = process.argv.slice(2);
const j = JSON.parse(fs.readFileSync(src, "utf8"));
j.normalizer = null;
j.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false };
j.decoder = { type: "Sequence", decoders: [
  { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
  { type: "ByteFallback" }, { type: "Fuse" }] };
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, "tokenizer.json"), JSON.stringify(j));
