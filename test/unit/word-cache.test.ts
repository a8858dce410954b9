/**
 * The per-word memo in front of @huggingface/tokenizers (lib/lm/word-cache.ts): Tokenizer.encode
 * gives the library's own ids, bit for bit, on the shipped corpus's text and on random text of
 * every kind (the first time a word is seen and after); texts holding an added token go to the
 * library whole; tokenizers of another shape get no memo; and a memo that would disagree with the
 * library on its probe text is refused.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { beforeAll, describe, expect, it } from 'vitest';

import { openTokenShard } from '../../lib/data/token-shards.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { BYTE_LEVEL_PATTERN, WordCache } from '../../lib/lm/word-cache.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';

const dirs = { shipped: path.join(packageRoot(), 'models/a'), fixture: path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied') };
type Spec = Record<string, unknown>;

async function specOf(dir: string): Promise<Spec> {
  const spec = JSON.parse(await readFile(path.join(dir, 'tokenizer.json'), 'utf8')) as Spec;
  return { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...spec };
}

/** The library alone, as Tokenizer builds it, without the memo. */
async function libraryOf(dir: string): Promise<(text: string) => number[]> {
  const Library = HfTokenizer as unknown as new (spec: object, config: object) => { encode(text: string, o: object): { ids: number[] } };
  const library = new Library(await specOf(dir), { clean_up_tokenization_spaces: false });
  return (text) => library.encode(text, { add_special_tokens: false }).ids;
}

/** Random text: code points from every plane and class, words, whitespace runs, lone surrogates. */
function randomText(rng: Rng): string {
  const pieces = ['the', ' quick', "'s", "'ll", ' 42', '3.14', '  ', '\n\n', '\t', ' \u00a0', 'é', '東京', '🚀', '=', '<a href="x">', 'QUJD', "''", '\r\n'];
  let text = '';
  const n = 1 + rng.int(40);
  for (let i = 0; i < n; i++) {
    const r = rng.uniform();
    if (r < 0.6) text += pieces[rng.int(pieces.length)];
    else if (r < 0.9) text += String.fromCodePoint(rng.int(0x3000));
    else if (r < 0.95) text += String.fromCharCode(0xd800 + rng.int(0x800)); // a lone surrogate
    else text += String.fromCodePoint(0x1f300 + rng.int(0x300));
  }
  return text;
}

let corpusTexts: string[];
beforeAll(async () => {
  const shipped = await Tokenizer.load(dirs.shipped);
  const shard = await openTokenShard(path.join(packageRoot(), 'corpus/val.tokens'));
  const ids = await shard.read(0, Math.min(300_000, shard.info.tokens));
  await shard.close();
  corpusTexts = shipped.decode(ids).split('<|endoftext|>').filter((text) => text.length > 0);
});

describe('Tokenizer.encode through the word memo', () => {
  it.each(Object.entries(dirs))('gives the library ids on the corpus, first seen and again (%s tokenizer)', async (_name, dir) => {
    const tokenizer = await Tokenizer.load(dir);
    const library = await libraryOf(dir);
    expect(corpusTexts.length).toBeGreaterThan(20);
    for (let pass = 0; pass < 2; pass++) {
      for (const text of corpusTexts) expect(Array.from(tokenizer.encode(text))).toEqual(library(text));
    }
  });

  it.each(Object.entries(dirs))('gives the library ids on random text of every kind (%s tokenizer)', async (_name, dir) => {
    const tokenizer = await Tokenizer.load(dir);
    const library = await libraryOf(dir);
    const rng = new Rng(5);
    for (let i = 0; i < 3000; i++) {
      const text = randomText(rng);
      expect(Array.from(tokenizer.encode(text)), JSON.stringify(text)).toEqual(library(text));
    }
  });

  it('leaves a text holding an added token, or asking for special tokens, to the library', async () => {
    const tokenizer = await Tokenizer.load(dirs.fixture);
    const library = await libraryOf(dirs.fixture);
    const text = 'before<|endoftext|>after <|endoftext|>';
    expect(Array.from(tokenizer.encode(text))).toEqual(library(text));
    expect(Array.from(tokenizer.encode(text)).filter((id) => id === 300)).toHaveLength(2);
    expect(tokenizer.encode('hello', { addSpecialTokens: true }).length).toBeGreaterThan(0);
  });
});

describe('WordCache', () => {
  it('covers every character of a text with its words', () => {
    const rng = new Rng(9);
    for (let i = 0; i < 500; i++) {
      const text = randomText(rng);
      expect((text.match(BYTE_LEVEL_PATTERN) ?? []).join('')).toBe(text);
    }
  });

  it('is built only for byte-level BPE with no normalizer, no prefix space and no dropout or fused unknowns', async () => {
    const spec = await specOf(dirs.fixture);
    const encode = (t: string) => Int32Array.from(t, (c) => c.codePointAt(0)!); // context-free: passes the probe
    expect(WordCache.for(spec, encode)).not.toBeNull();
    const pre = spec['pre_tokenizer'] as Spec;
    const model = spec['model'] as Spec;
    for (const changed of [
      { normalizer: { type: 'NFC' } },
      { pre_tokenizer: { ...pre, add_prefix_space: true } },
      { pre_tokenizer: { ...pre, use_regex: false } },
      { pre_tokenizer: { type: 'Sequence', pretokenizers: [pre] } },
      { model: { ...model, type: 'WordPiece' } },
      { model: { ...model, dropout: 0.1 } },
      { model: { ...model, fuse_unk: true } },
    ]) {
      expect(WordCache.for({ ...spec, ...changed }, encode), JSON.stringify(Object.keys(changed))).toBeNull();
    }
  });

  it('is refused when the words alone would not give the ids of the whole text', async () => {
    const spec = await specOf(dirs.fixture);
    // Ids that depend on the whole text (its length): word by word they differ.
    expect(WordCache.for(spec, (t) => Int32Array.of(t.length))).toBeNull();
  });

  it('stays exact past its word limit', async () => {
    const spec = await specOf(dirs.fixture);
    let asked = 0;
    const cache = WordCache.for(spec, (t) => {
      asked++;
      return Int32Array.from(t, (c) => c.codePointAt(0)! % 1000);
    })!;
    const words = Array.from({ length: 250_000 }, (_, i) => ` w${i.toString(36)}x`);
    for (let start = 0; start < words.length; start += 5000) {
      const text = words.slice(start, start + 5000).join('');
      expect(Array.from(cache.encode(text)!)).toEqual(Array.from(text, (c) => c.codePointAt(0)! % 1000));
    }
    const before = asked;
    cache.encode(words[words.length - 1]!); // recent: still memoised
    expect(asked).toBe(before);
  });
});
