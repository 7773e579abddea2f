#!/usr/bin/env node
// Writes tests/NanoSparse.Tests/Fixtures/tiktoken/tiktoken_cases.json: the texts of the GPT-2 BPE fixture and the
// token ids that the npm package `js-tiktoken` (a JavaScript port of OpenAI's tiktoken) gives for them under the
// cl100k_base and o200k_base encodings, to check NanoSparse's TiktokenTokenizer (Microsoft.ML.Tokenizers) against.
//
// Run:  cd "$(mktemp -d)" && npm init -y && npm install js-tiktoken && \
//       node /path/to/repo/tools/make_tiktoken_fixture.js "$PWD/node_modules/js-tiktoken"
const fs = require('fs');
const path = require('path');

const pkg = process.argv[2];
if (!pkg) { console.error('usage: node make_tiktoken_fixture.js <node_modules/js-tiktoken dir>'); process.exit(2); }
const { getEncoding } = require(path.resolve(pkg));
const root = path.join(__dirname, '..', 'tests', 'NanoSparse.Tests', 'Fixtures');
const texts = JSON.parse(fs.readFileSync(path.join(root, 'gpt2', 'bpe_cases.json'), 'utf8')).cases.map(c => c.text);
texts.push('tabs\t\tand  spaces   \n\n\n  mixed 123456789 numbers 1234 and 你好世界 and Ünïcödé');

const result = { source: 'npm js-tiktoken@' + require(path.resolve(pkg, 'package.json')).version, encodings: {} };
for (const name of ['cl100k_base', 'o200k_base']) {
  const enc = getEncoding(name);
  result.encodings[name] = texts.map(t => {
    const ids = enc.encode(t, [], []); // special tokens are ordinary text
    if (enc.decode(ids) !== t) throw new Error(`${name} does not round-trip ${JSON.stringify(t.slice(0, 40))}`);
    return { text: t, ids };
  });
}
fs.mkdirSync(path.join(root, 'tiktoken'), { recursive: true });
fs.writeFileSync(path.join(root, 'tiktoken', 'tiktoken_cases.json'), JSON.stringify(result) + '\n');
console.log(`wrote ${texts.length} texts x 2 encodings`);
