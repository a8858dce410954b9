/**
 * The tokenizer: the byte-level BPE trained with Python's tokenizers
 * (scripts/fixtures/make_gpt2_fixtures.py) gives the ids Python gave, decodes any text back
 * unchanged, and a missing or malformed tokenizer.json is an error naming the file.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Tokenizer, TokenizerError } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';

const fixtures = path.join(packageRoot(), 'test/fixtures/gpt2');
const modelDir = path.join(fixtures, 'tiny-gelu-new-tied');

interface Reference {
  vocab_size: number;
  end_of_text_id: number;
  cases: { text: string; ids: number[] }[];
}

let tokenizer: Tokenizer;
let reference: Reference;
let scratch: string;

beforeAll(async () => {
  tokenizer = await Tokenizer.load(modelDir);
  reference = JSON.parse(await readFile(path.join(fixtures, 'tokenizer-reference.json'), 'utf8')) as Reference;
  scratch = await mkdtemp(path.join(tmpdir(), 'monosemantic-tokenizer-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function loadError(dir: string): Promise<TokenizerError> {
  const error = await Tokenizer.load(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TokenizerError);
  return error as TokenizerError;
}

describe('Tokenizer', () => {
  it('has the vocabulary and special tokens Python reports', () => {
    expect(tokenizer.vocabSize).toBe(reference.vocab_size);
    expect(tokenizer.vocabSize).toBe(301);
    // No tokenizer_config.json: BOS and EOS come from config.json's bos_token_id / eos_token_id.
    expect(tokenizer.bosTokenId).toBe(reference.end_of_text_id);
    expect(tokenizer.eosTokenId).toBe(reference.end_of_text_id);
    expect(tokenizer.idToToken(reference.end_of_text_id)).toBe('<|endoftext|>');
    expect(tokenizer.tokenToId('<|endoftext|>')).toBe(300);
    expect(tokenizer.idToToken(301)).toBeNull();
    expect(tokenizer.tokenToId('not a token')).toBeNull();
  });

  it('encodes every reference text to the ids Python gave it (no special tokens added)', () => {
    expect(reference.cases.length).toBeGreaterThanOrEqual(10);
    for (const { text, ids } of reference.cases) {
      const ours = tokenizer.encode(text);
      expect(ours).toBeInstanceOf(Int32Array);
      expect(Array.from(ours), JSON.stringify(text)).toEqual(ids);
      expect(tokenizer.decode(ours), JSON.stringify(text)).toBe(text);
    }
  });

  it('round-trips arbitrary text: emoji, CJK, code, tabs, whitespace runs, control characters', () => {
    const texts = [
      'Hello, world!',
      'emoji 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵',
      '中文、日本語、한국어、ไทย、العربية、עברית、русский',
      'function f(a, b) {\n\treturn a ?? b;\n}\n',
      'x\t\ty\t \t z',
      '    four leading spaces and trailing    ',
      '\n\n\n\r\n\r\nlines\n',
      'NUL \u0000 and BEL \u0007 and DEL \u007f',
      'combining e\u0301 vs é; ligature ﬁ; full width ＡＢＣ; zero width \u200b here',
      "contractions: I'm, you're, it's, we'll, they've, I'd, don't",
      'special text <|endoftext|> inside',
      ' ',
      'a',
      '1234567890'.repeat(20),
      '\u{10FFFF}\u{1F9E0}\u{E0001}',
    ];
    for (const text of texts) {
      const ids = tokenizer.encode(text);
      expect(ids.length, JSON.stringify(text)).toBeGreaterThan(0);
      for (const id of ids) {
        expect(id).toBeGreaterThanOrEqual(0);
        expect(id).toBeLessThan(tokenizer.vocabSize);
      }
      expect(tokenizer.decode(ids), JSON.stringify(text)).toBe(text);
    }
    expect(tokenizer.encode('')).toEqual(new Int32Array(0));
    expect(tokenizer.decode([])).toBe('');
  });

  it('matches special-token text in the input, and can leave special tokens out when decoding', () => {
    const ids = Array.from(tokenizer.encode('a<|endoftext|>b'));
    expect(ids).toContain(300);
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('ab');
  });

  it('decode refuses ids outside the vocabulary, naming the position', () => {
    expect(() => tokenizer.decode([1, 301])).toThrow(/ids\[1\] must be an integer in \[0, 301\) \(got 301\)/);
    expect(() => tokenizer.decode([-1])).toThrow(RangeError);
    expect(() => tokenizer.decode([1.5])).toThrow(RangeError);
    expect(() => tokenizer.encode(5 as unknown as string)).toThrow(TypeError);
  });

  it('takes BOS and EOS from tokenizer_config.json when it names them', async () => {
    const dir = path.join(scratch, 'with-config');
    await mkdir(dir, { recursive: true });
    await copyFile(path.join(modelDir, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const hi = tokenizer.tokenToId('h')!;
    await writeFile(
      path.join(dir, 'tokenizer_config.json'),
      JSON.stringify({ bos_token: 'h', eos_token: { content: '<|endoftext|>', special: true }, clean_up_tokenization_spaces: true }),
    );
    const loaded = await Tokenizer.load(dir);
    expect(loaded.bosTokenId).toBe(hi);
    expect(loaded.eosTokenId).toBe(300);
    // clean_up_tokenization_spaces is not applied: decode stays the exact inverse.
    const text = 'a , b . c !';
    expect(loaded.decode(loaded.encode(text))).toBe(text);

    // Neither file names them: GPT-2's "<|endoftext|>".
    const bare = path.join(scratch, 'bare');
    await mkdir(bare, { recursive: true });
    await copyFile(path.join(modelDir, 'tokenizer.json'), path.join(bare, 'tokenizer.json'));
    const fallback = await Tokenizer.load(bare);
    expect(fallback.bosTokenId).toBe(300);
    expect(fallback.eosTokenId).toBe(300);
  });

  it('a missing or malformed tokenizer.json is a TokenizerError naming the file', async () => {
    const noFolder = await loadError(path.join(scratch, 'no-such-model'));
    expect(noFolder.path).toBe(path.join(scratch, 'no-such-model'));
    expect(noFolder.message).toBe(`${path.join(scratch, 'no-such-model')}: no such folder`);

    const dir = path.join(scratch, 'malformed');
    await mkdir(dir, { recursive: true });
    const missing = await loadError(dir);
    expect(missing.path).toBe(path.join(dir, 'tokenizer.json'));
    expect(missing.message).toMatch(/tokenizer\.json: not found/);

    await writeFile(path.join(dir, 'tokenizer.json'), '{"model": {"type": "BPE",');
    expect((await loadError(dir)).message).toMatch(/tokenizer\.json: not valid JSON/);

    await writeFile(path.join(dir, 'tokenizer.json'), '[1, 2]');
    expect((await loadError(dir)).message).toMatch(/tokenizer\.json: must hold a JSON object/);

    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0' }));
    const noModel = await loadError(dir);
    expect(noModel.field).toBe('model');
    expect(noModel.message).toMatch(/tokenizer\.json: model: must be an object \(got nothing\)/);

    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'NoSuchModel' } }));
    expect((await loadError(dir)).message).toMatch(/tokenizer\.json: is not a tokenizer that can be loaded \(.*NoSuchModel/);

    await copyFile(path.join(modelDir, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    await writeFile(path.join(dir, 'tokenizer_config.json'), '{ not json');
    expect((await loadError(dir)).message).toMatch(/tokenizer_config\.json: not valid JSON/);
  });
});
