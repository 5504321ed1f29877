// Deterministic hostile corpus for the tokenizer tests: prints JSON Lines, one JSON string per line
// (usage: node make_corpus.mjs [N], default 2400 lines). Same output on every run (fixed-seed PRNG).
//
// What is in it: hand-written edge cases first (empty, whitespace-only, CRLF, special-token text
// inline and half-written, contractions in every case, digit runs, emoji ZWJ sequences, combining
// marks, NFC/NFD pairs, byte-fallback characters, code), then random mixtures of fragments from
// many scripts and whitespace kinds.
//
// Invalid UTF-8: a JSON string cannot carry raw invalid bytes, and a lone surrogate escape
// ("\ud800") is not a Unicode string either; the reference (JavaScript) would silently turn it
// into U+FFFD while ftune rejects such input with an error naming the line. So the corpus holds
// only valid Unicode (and no U+0000, which C strings cannot carry); test_tokenizer.sh checks the
// rejection of invalid input separately.

const N = Number(process.argv[2] || 2400);

let seed = 0x5eed1234;
function rnd() { // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));

const scripts = [
  "The quick brown fox jumps over the lazy dog.", "naïve café résumé coöperate façade", "Größe straße ÄÖÜ äöü ß ẞ",
  "Привет, мир! Съешь же ещё этих мягких французских булок", "Γειά σου Κόσμε· ξεσκεπάζω την ψυχοφθόρα βδελυγμία",
  "مرحبا بالعالم، كيف حالك؟ ١٢٣٤٥", "שלום עולם! מה שלומך?", "नमस्ते दुनिया, आप कैसे हैं? १२३",
  "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง", "你好，世界！我爱自然语言处理。", "こんにちは世界、カタカナとひらがな。ｶﾀｶﾅ",
  "안녕하세요 세계! 한국어 토크나이저", "გამარჯობა მსოფლიო", "Բարեւ աշխարհ", "ሰላም ልዑል", "வணக்கம் உலகம்",
  "ওহে বিশ্ব", "Xin chào thế giới, Tiếng Việt có dấu", "Witaj świecie, zażółć gęślą jaźń", "Merhaba dünya, İstanbul ılık",
  "ᚠᛇᚻ᛫ᛒᛦᚦ", "ꯃꯤꯇꯩ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝟙𝟚𝟛", "Ⅻ ⅻ ① ⑳ ½ ¾ ²³", "ﬁﬂ ﬀ ﬃ Å Ω K µ", "𠀀𠀁𪚥 𩸽 漢字",
  "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "ꦧꦱꦗꦮ", "\u{E000}\u{F8FF}\u{10FFFD}", "\uFFFD\uFFFC\uFFFF", "ǅungla ǈ ǋ", "İı Iİ ﬅ",
];
const emoji = [
  "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵🇫🇷", "1️⃣", "#️⃣", "❤️", "❤\uFE0E", "🧑🏿‍🚀", "👩‍❤️‍💋‍👨", "🫠", "😀😃😄", "🐈‍⬛",
  "☺️", "✌🏻", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
];
const combining = [
  "e\u0301", "a\u0308\u0304", "Z\u0351\u0364\u0346\u0308\u0303a\u0337\u0321l\u0338\u0327g\u0334o\u0335", "\u1100\u1161\u11A8",
  "\u0915\u094D\u0937", "o\u0302\u0323", "\u00C5 vs A\u030A", "\u212B", "n\u0303", "\u0301leading mark", "x\u20DD",
];
const spaces = [
  " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", "\r", " \n ", "\u00A0", "\u2009", "\u3000",
  "\u200B", "\uFEFF", "\u0085", "\u2028", "\u2029", "\u000B", "\u000C", " \t \n", "        ", "\u202F", "\u1680",
];
const digits = [
  "0", "7", "42", "123", "1234", "12345", "3.14159", "-273.15", "1,000,000", "2024-02-29", "0x1F4A9", "1e-9",
  "١٢٣٤", "３２１", "٣.١٤", "9999999999999999999", "00000", "v1.2.3", "10:30pm", "$5.99", "50%",
];
const contractions = [
  "I'm", "I'M", "i'M", "you're", "YOU'RE", "You'Re", "it's", "IT'S", "It'S", "we've", "WE'VE", "they'll", "THEY'LL",
  "she'd", "SHE'D", "don't", "DON'T", "Don'T", "can't", "won't", "y'all", "'s", "'S", "'t", "'ll", "'LL", "'re", "'Ve",
  "it’s", "don’t", "O'Neill", "rock'n'roll", "''", "'''", "it'ſ", "I'\u212A", "'\u0130",
];
const code = [
  "def f(x):\n    return x**2  # square", "int main(void) { return 0; }", "for (i = 0; i < n; i++) a[i] += b[i];",
  "{\"key\": [1, 2, {\"nested\": null}], \"b\": true}", "<div class=\"x\">Hello</div>", "SELECT * FROM t WHERE id = 42;",
  "const re = /\\s+(?!\\S)/gu;", "x = y if z else w", "fn main() { println!(\"{}\", 1); }", "#include <stdio.h>",
  "    indented\n\tTabbed\n", "a\\nb\\tc", "if (a && b || !c) {}", "$ ls -la | grep foo > out.txt", "@decorator\nclass A: pass",
  "https://example.com/path?q=1&r=two#frag", "user@example.org", "C:\\Windows\\System32", "~/.bashrc", "<<<>>>", "===",
  "....", "!!!???", "---", "___init___", "a_b_c", "camelCaseWord", "snake_case_word", "SCREAMING_CASE", "x86_64",
];
const specials = [
  "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
  "<|reserved_special_token_5|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
  "<|fim_prefix|>", "<0x41>", "<0xZZ>", "<|im_sta", "<s", "s>", "<<s>>", "<|im_end|><|im_end|>", "<|", "|>", "[INST]",
];
const words = [
  "hello", "world", "tokenizer", "antidisestablishmentarianism", "Pneumonoultramicroscopicsilicovolcanoconiosis", "a", "I",
  "the", "THE", "The", "tHe", "données", "über", "naïveté", "ﬁnance", "co-operate", "e-mail", "state-of-the-art",
];
const pools = [scripts, emoji, combining, spaces, digits, contractions, code, specials, words];

const out = [];
// hand-written edge cases
const fixed = [
  "", " ", "  ", "\n", "\r\n", "\t", "   \n\n   ", "a", " a", "a ", " a ", "  a  b   c    ", "a\r\nb\r\nc", "\r\n\r\n",
  "Hello world", "Hello  world", "hello\n\nworld\n", " \n", "\n ", "x\u00A0y", "x \u00A0 y", "\u3000全角スペース\u3000",
  "<s>", "</s>", "<s><s>", " <s> ", "a<s>b", "<s> hello </s>", "<|begin_of_text|>Hi<|eot_id|>", "<|im_start|>user\nhi<|im_end|>\n",
  "<|im_start|>assistant\n<think>\n\n</think>\n\nok<|im_end|>", "<unk>", "<0x0A>", "text<|endoftext|>more",
  "I'm here. You're there. It's fine; we've won, they'll see, she'd know, don't!", "I'M HERE. YOU'RE THERE. IT'S DONE.",
  "1234567890", "12345678901234567890", "3.141592653589793", "۱۲۳۴۵۶", "1 2 3 4 5", "1  2   3", "a1b2c3", "１２３abc",
  "😀", "👨‍👩‍👧‍👦 family", "🏳️‍🌈🏳️‍⚧️", "e\u0301 \u00E9", "\u1100\u1161\u11A8 \uAC01", "Z\u0351\u0364a\u0337l\u0338g\u0334o",
  "\u200B\u200C\u200D", "\uFEFFbom", "a\u0085b", "line\u2028sep", "\u000B\u000C", "tab\there", "\t\t\ttabs",
  "    four spaces", "trailing spaces    ", "mixed \t \n \r\n end", "𠀀", "\u{10FFFF}", "\u{E0001}", "\uFFFD", "ǅ",
  "ſ", "it'ſ", "K", "Å", "ﬀ", "İstanbul", "ß", "ẞ", "Ⅸ",
];
for (const f of fixed) out.push(f);
// every fragment of every pool on its own, and with a leading space
for (const p of pools) for (const f of p) { out.push(f); out.push(" " + f); }
// random mixtures
while (out.length < N) {
  const k = int(1, 12);
  let s = "";
  for (let i = 0; i < k; i++) {
    const p = pick(pools);
    let f = pick(p);
    if (rnd() < 0.15) f = f.toUpperCase();
    if (rnd() < 0.1) f = f.toLowerCase();
    if (rnd() < 0.1 && f.length > 3) { const a = int(0, f.length - 1); f = f.slice(a, a + int(1, 8)); }
    s += f;
    if (rnd() < 0.6) s += pick(rnd() < 0.7 ? [" "] : spaces);
  }
  if (rnd() < 0.05) s = s.repeat(int(2, 5));
  // drop lone surrogates that slicing may have produced: the corpus is valid Unicode only
  s = s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "");
  out.push(s);
}
for (const s of out.slice(0, N)) console.log(JSON.stringify(s));
