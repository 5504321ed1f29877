// Writes broken variants of a real tokenizer.json (and a tokenizer_config.json beside it where a
// case gives one), one directory each, and prints
// "case<TAB>text the error line must contain" per variant.
// usage: node make_malformed.mjs GOOD_tokenizer.json OUT_DIR
import fs from "fs";
import path from "path";
const [good, out] = process.argv.slice(2);
const text = fs.readFileSync(good, "utf8");
const cases = [
  ["missing_model", (j) => { delete j.model; }, "key 'model': missing"],
  ["unknown_model_type", (j) => { j.model.type = "Unigram"; }, "key 'model.type': unknown model type 'Unigram'"],
  ["unknown_model_key", (j) => { j.model.frobnicate = 1; }, "key 'model.frobnicate': unknown key"],
  ["unknown_normalizer", (j) => { j.normalizer.normalizers[1].type = "Lowercase"; }, "key 'normalizer.normalizers[1].type': unknown normalizer type"],
  ["unknown_decoder", (j) => { j.decoder.decoders[2].type = "CTC"; }, "key 'decoder.decoders[2].type': unknown decoder type"],
  ["unknown_pre_tokenizer", (j) => { j.pre_tokenizer = { type: "BertPreTokenizer" }; }, "key 'pre_tokenizer.type': unknown pre_tokenizer type"],
  ["unknown_post_processor", (j) => { j.post_processor.type = "Whatever"; }, "key 'post_processor.type': unknown post_processor type"],
  ["unknown_top_key", (j) => { j.extra = {}; }, "key 'extra': unknown key"],
  ["bad_merge_token", (j) => { j.model.merges[5] = "▁ qzqzqzq"; }, "key 'model.merges': merge 5: token \"qzqzqzq\" is not in the vocab"],
  ["bad_merge_shape", (j) => { j.model.merges[3] = "▁ t h"; }, "key 'model.merges': merge 3"],
  ["bad_merge_type", (j) => { j.model.merges[7] = 42; }, "key 'model.merges': merge 7 is neither"],
  ["bad_merge_result", (j) => { j.model.merges[0] = "<0x41> <0x42>"; }, "key 'model.merges': merge 0: result"],
  ["vocab_not_object", (j) => { j.model.vocab = []; }, "key 'model.vocab'"],
  ["vocab_bad_id", (j) => { j.model.vocab["▁t"] = -3; }, "key 'model.vocab'"],
  ["added_no_content", (j) => { delete j.added_tokens[0].content; }, "key 'added_tokens[0].content'"],
  ["bad_regex", (j) => { j.pre_tokenizer = { type: "Split", pattern: { Regex: "(unclosed" }, behavior: "Isolated", invert: false }; }, "key 'pre_tokenizer.pattern.Regex': regex does not compile"],
  ["truncation_set", (j) => { j.truncation = { max_length: 8 }; }, "key 'truncation'"],
  ["dropout_set", (j) => { j.model.dropout = 0.1; }, "key 'model.dropout'"],
  ["unk_missing", (j) => { j.model.unk_token = "<nope>"; }, "key 'model.unk_token'"],
  // a key twice: cJSON reads the first value, serde (HF) the last; the text is edited, not the object
  ["dup_model_key", (j) => JSON.stringify(j).replace('"byte_fallback":true', '"byte_fallback":true,"byte_fallback":false'), "key 'model.byte_fallback' appears twice"],
  ["dup_top_key", (j) => JSON.stringify(j).replace(/}$/, ',"decoder":null}'), "key 'decoder' appears twice"],
  ["dup_nested_key", (j) => JSON.stringify(j).replace('"type":"Prepend"', '"type":"Prepend","type":"NFC"'), "key 'normalizer.normalizers[0].type' appears twice"],
  ["dup_vocab_token", (j) => JSON.stringify(j).replace('"▁Hello":22557', '"▁Hello":22557,"▁Hello":22557'), "key 'model.vocab': token '▁Hello' appears twice"],
  // U+0000 in a string: cJSON's strings end at it ("a\u0000b" read as "a")
  ["nul_regex", (j) => { j.pre_tokenizer = { type: "Split", pattern: { Regex: "a\0b" }, behavior: "Isolated", invert: false }; }, "key 'pre_tokenizer.pattern.Regex': the string holds U+0000"],
  ["nul_replace", (j) => { j.normalizer.normalizers[1].content = "\u2581\0x"; }, "key 'normalizer.normalizers[1].content': the string holds U+0000"],
  ["nul_vocab_token", (j) => { j.model.vocab["a\0b"] = 32000; }, "key 'model.vocab': a key of this object holds U+0000"],
  // added_tokens ids HF would not give: it takes the vocab id, or the next free one, and ignores a repeat
  ["added_id_taken", (j) => { j.added_tokens.push({ id: 100, content: "<extra>", special: true }); }, "key 'added_tokens[3]': '<extra>' is not in model.vocab, so HF gives it the next free id 32000, not 100"],
  ["added_vocab_id", (j) => { j.added_tokens[1].id = 5; }, "key 'added_tokens[1]': '<s>' is id 1 in model.vocab, not 5"],
  ["added_repeat", (j) => { j.added_tokens.push({ ...j.added_tokens[1], id: 100 }); }, "key 'added_tokens[3]': '<s>' was already added with id 1 (here id 100)"],
  // tokenizer_config.json (the fourth field): special tokens the tokenizer lacks, or not token strings
  ["cfg_eos_unknown", (j) => {}, "tokenizer_config.json: key 'eos_token': token '<|im_end|>' is not in", { bos_token: "<s>", eos_token: "<|im_end|>" }],
  ["cfg_eos_number", (j) => {}, "tokenizer_config.json: key 'eos_token': expected a token string", { eos_token: 2 }],
  ["cfg_bos_list", (j) => {}, "tokenizer_config.json: key 'bos_token': expected a token string", { bos_token: ["<s>"] }],
  ["cfg_extra_unknown", (j) => {}, "tokenizer_config.json: key 'additional_special_tokens[1]': token '<tool>' is not in", { additional_special_tokens: ["</s>", { content: "<tool>" }] }],
  ["cfg_dup_key", (j) => {}, "tokenizer_config.json: key 'eos_token' appears twice", '{"eos_token": "</s>", "eos_token": "<s>"}'],
  ["version_unknown", (j) => { j.version = "2.0"; }, "key 'version': unknown tokenizer.json version '2.0'"],
  ["post_id_fraction", (j) => { j.post_processor.special_tokens["<s>"].ids[0] = 1.7; }, "key 'post_processor.single[0].SpecialToken': special token \"<s>\" has an id that is not an integer"],
  ["invalid_json", null, "invalid JSON"],
];
for (const [name, edit, want, config] of cases) {
  const dir = path.join(out, name);
  fs.mkdirSync(dir, { recursive: true });
  let t;
  if (edit) { const j = JSON.parse(text); const r = edit(j); t = typeof r === "string" ? r : JSON.stringify(j); } else t = text.slice(0, 5000);
  fs.writeFileSync(path.join(dir, "tokenizer.json"), t);
  if (config !== undefined)
    fs.writeFileSync(path.join(dir, "tokenizer_config.json"), typeof config === "string" ? config : JSON.stringify(config));
  console.log(`${name}\t${want}`);
}
