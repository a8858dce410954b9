/**
 * The default corpus's committed files: corpus/tokenizer.json loads with lib/lm/tokenizer.ts,
 * has the documented vocabulary (8192, <|endoftext|> last, the BOS and EOS) and round-trips the
 * kinds of text the corpus holds; the committed token shards verify, hold the documented token
 * counts and decode to text; `monosemantic tokenize`'s library function packs documents with EOS
 * between them.
 */
import { statSync } from 'node:fs';
import { rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { tokenizeCorpus } from '../../lib/cli/tokenize.js';
import { openShardContextStream } from '../../lib/data/shard-contexts.js';
import { openTokenShard, verifyTokenShard } from '../../lib/data/token-shards.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';
import { tempDir } from '../helpers/run-fixtures.js';

const corpusDir = path.join(packageRoot(), 'corpus');
const VOCAB_SIZE = 8192;
const END_OF_TEXT = 8191;
/** Token counts as corpus/README.md states them. */
const SHIPPED = [
  { file: 'val.tokens', tokens: 238_531, maxBytes: 2_000_000 },
  { file: 'train-sample.tokens', tokens: 3_998_812, maxBytes: 8_000_000 },
];

let tokenizer: Tokenizer;
const scratch = tempDir('default-tokenizer');
beforeAll(async () => {
  tokenizer = await Tokenizer.load(corpusDir);
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const SAMPLES: Record<string, string> = {
  email:
    'From fork-admin@xent.com  Thu Sep  5 11:31:23 2002\r\nReturn-Path: <fork-admin@xent.com>\r\n' +
    'Received: from localhost (jalapeno [127.0.0.1])\n\tby jmason.org (Postfix) with ESMTP id 3BC4F16F82\n' +
    'Subject: =?iso-8859-1?Q?R=E9sum=E9?= [SPAM] Make $$$ fast!!!\nContent-Type: text/plain; charset="us-ascii"\n\n' +
    '> On Thu, 5 Sep 2002, Bob wrote:\n>> quoted twice\nThanks -- see http://www.example.com/path?a=1&b=2#frag\n',
  html: '<HTML><BODY bgcolor="#FFFFFF"><table width=600><tr><td><a href="http://x.example/?id=42&amp;r=1">Click&nbsp;here</a></td></tr></table><!-- c --></BODY></HTML>\n',
  base64:
    'Content-Transfer-Encoding: base64\n\nR0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==\n' +
    'UEsDBBQAAAAIAG1xY1k2m+9cXQAAAGEAAAAIABwAdGVzdC50eHRVVAkAA4/t\n',
  python: 'import os\n\n\nclass Walker(object):\n    """Docstring."""\n\n    def __init__(self, root: str = ".") -> None:\n        self.root = root  # comment\n\tif x: return {k: v for k, v in d.items()}\n',
  javascript: "'use strict';\nconst { join } = require('node:path');\nmodule.exports = async function (a, b) {\n  return a ?? b?.c ?? `t ${a}`;\n};\n",
  unicode: 'Café naïve Straße — “quoted” « à la » 日本語のテキスト 中文 한국어 العربية עברית Ελληνικά русский 😀👍🏽 👨‍👩‍👧 🇫🇷 e\u0301 \ufb01 \uff21 \u200b \u{10ffff}',
  controls: 'NUL \u0000 BEL \u0007 ESC \u001b DEL \u007f NEL \u0085 BOM \ufeff LS \u2028 tab\t\tCR\r\r\n',
  whitespace: '   leading\n\n\n    indented     runs\t \t  trailing   ',
  specialText: 'before<|endoftext|>after <|endoftext|>',
};

describe('corpus/tokenizer.json', () => {
  it('loads with the documented vocabulary: 8192 ids, <|endoftext|> last, the BOS and EOS', () => {
    expect(tokenizer.vocabSize).toBe(VOCAB_SIZE);
    expect(tokenizer.tokenToId('<|endoftext|>')).toBe(END_OF_TEXT);
    expect(tokenizer.bosTokenId).toBe(END_OF_TEXT);
    expect(tokenizer.eosTokenId).toBe(END_OF_TEXT);
    expect(tokenizer.idToToken(0)).toBe('!'); // byte-level alphabet first
    expect(tokenizer.idToToken(END_OF_TEXT - 1)).not.toBeNull();
  });

  it.each(Object.entries(SAMPLES))('round-trips %s text exactly', (_kind, text) => {
    const ids = tokenizer.encode(text);
    expect(ids.every((id) => id >= 0 && id < VOCAB_SIZE)).toBe(true);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  it('round-trips every byte-level character and compresses English and code', () => {
    const everyCharacter = Array.from({ length: 0x250 }, (_, i) => String.fromCodePoint(i)).join('');
    expect(tokenizer.decode(tokenizer.encode(everyCharacter))).toBe(everyCharacter);
    const english = 'The jury said it did find that many of the registration and election laws are outmoded or inadequate and often ambiguous.';
    expect(english.length / tokenizer.encode(english).length).toBeGreaterThan(3);
    const code = SAMPLES['python']!;
    expect(code.length / tokenizer.encode(code).length).toBeGreaterThan(2.5);
    expect(Array.from(tokenizer.encode('<|endoftext|>'))).toEqual([END_OF_TEXT]);
  });

  it('labels every token distinctly: parts of a UTF-8 character by their bytes, whole ones as text', () => {
    const labels = Array.from({ length: VOCAB_SIZE }, (_, id) => tokenizer.tokenLabel(id));
    expect(new Set(labels).size).toBe(VOCAB_SIZE);
    // "ï" and "€" are split into bytes here; the labels put their bytes back in order.
    const pieces = Array.from(tokenizer.encode('naïve €'), (id) => tokenizer.tokenLabel(id)).join('');
    expect(pieces).toBe('na<0xC3><0xAF>ve <0xE2><0x82><0xAC>');
    expect(tokenizer.tokenLabel(tokenizer.encode(' the')[0]!)).toBe(' the');
  });
});

describe('committed token shards', () => {
  it.each(SHIPPED)('corpus/$file verifies, holds $tokens tokens below the vocabulary size, and is small', async ({ file, tokens, maxBytes }) => {
    const info = await verifyTokenShard(path.join(corpusDir, file)); // every token < vocabSize, checksum
    expect(info).toMatchObject({ vocabSize: VOCAB_SIZE, tokenBytes: 2, tokens });
    expect(64 + 2 * info.tokens).toBeLessThanOrEqual(maxBytes);
  });

  it('decode to documents separated by <|endoftext|>, and feed shard contexts', async () => {
    const reader = await openTokenShard(path.join(corpusDir, 'val.tokens'));
    let head: Int32Array;
    try {
      head = await reader.read(0, 20_000);
    } finally {
      await reader.close();
    }
    expect(head[0]).not.toBe(END_OF_TEXT);
    const separators = head.filter((id) => id === END_OF_TEXT).length;
    expect(separators).toBeGreaterThan(0);
    const documents = tokenizer.decode(head).split('<|endoftext|>');
    expect(documents.length).toBe(separators + 1);
    expect(documents.every((text) => text.length > 0)).toBe(true);

    const stream = await openShardContextStream({ paths: [path.join(corpusDir, 'val.tokens')], contextLength: 128, seed: 0, bosTokenId: tokenizer.bosTokenId });
    const batch = (await stream.next(4))!;
    expect(batch.length).toBe(4 * 128);
    for (let row = 0; row < 4; row++) {
      expect(batch[row * 128]).toBe(END_OF_TEXT);
      expect(batch[row * 128 + 1]).not.toBe(END_OF_TEXT);
    }
    expect(tokenizer.decode(batch.subarray(1, 128)).length).toBeGreaterThan(100);
    await stream.close();
  });
});

describe('tokenizeCorpus (monosemantic tokenize)', () => {
  it('packs the documents with EOS between them, and stops before a document past --max-tokens', async () => {
    const texts = ['First document.', 'Second one,\nwith two lines.', 'def third():\n    return 3\n'];
    const corpus = path.join(scratch, 'docs.jsonl');
    await writeFile(corpus, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const ids = texts.map((text) => Array.from(tokenizer.encode(text)));
    const expected = [...ids[0]!, END_OF_TEXT, ...ids[1]!, END_OF_TEXT, ...ids[2]!];

    const out = path.join(scratch, 'docs.tokens');
    const result = await tokenizeCorpus({ tokenizer: path.join(corpusDir, 'tokenizer.json'), corpus: [corpus], out });
    expect(result).toMatchObject({ documents: 3, truncated: false, shard: { tokens: expected.length, vocabSize: VOCAB_SIZE, tokenBytes: 2 } });
    const reader = await openTokenShard(out);
    expect(Array.from(await reader.read(0, reader.info.tokens))).toEqual(expected);
    await reader.close();

    const limit = ids[0]!.length + 1 + ids[1]!.length + 1 + ids[2]!.length - 1;
    const cut = await tokenizeCorpus({ tokenizer: corpusDir, corpus: [corpus], out, maxTokens: limit });
    expect(cut).toMatchObject({ documents: 2, truncated: true, shard: { tokens: ids[0]!.length + 1 + ids[1]!.length } });

    await expect(tokenizeCorpus({ tokenizer: corpus, corpus: [corpus], out })).rejects.toThrow(/must be named tokenizer\.json/);
    // Nothing to write: a shard of 0 tokens would only fail later, in whatever reads it.
    const nothing = path.join(scratch, 'nothing.tokens');
    await expect(tokenizeCorpus({ tokenizer: corpusDir, corpus: [corpus], out: nothing, maxTokens: 1 })).rejects.toThrow(/no document to write \(its first document alone is longer than --max-tokens 1\)/);
    const bodies = path.join(scratch, 'bodies.jsonl');
    await writeFile(bodies, '{"body": "text under another field"}\n');
    await expect(tokenizeCorpus({ tokenizer: corpusDir, corpus: [bodies], out: nothing })).rejects.toThrow(/bodies\.jsonl: no document to write \(1 file\(s\) and 0 document\(s\) read; skipped .*no string "text" field/);
    await expect(stat(nothing)).rejects.toThrow(/ENOENT/);
    await expect(tokenizeCorpus({ tokenizer: corpusDir, corpus: [corpus], out, threads: -1 })).rejects.toThrow(/threads/);
  });

  it('writes the same shard whether worker threads or the calling thread tokenise', async () => {
    // Enough documents for many batches on the workers, of varied kinds and lengths.
    const kinds = ['Plain prose, with punctuation.', '<td class="x">cell</td>', 'QUJDREVGR0hJSktMTU5PUFFS', 'naïve café 東京', 'x = [i ** 2 for i in range(10)]'];
    const texts = Array.from({ length: 1500 }, (_, i) => Array.from({ length: 1 + (i % 37) }, (__, j) => kinds[(i * 7 + j) % kinds.length]).join(i % 3 ? ' ' : '\n'));
    const corpus = path.join(scratch, 'many.jsonl');
    await writeFile(corpus, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const shards: number[][] = [];
    for (const threads of [0, 3]) {
      const out = path.join(scratch, `many-${threads}.tokens`);
      const result = await tokenizeCorpus({ tokenizer: corpusDir, corpus: [corpus], out, threads, maxTokens: 300_000 });
      expect(result.documents).toBeGreaterThan(1000);
      const reader = await openTokenShard(out);
      shards.push(Array.from(await reader.read(0, reader.info.tokens)));
      await reader.close();
    }
    expect(shards[1]).toEqual(shards[0]);
  });

  it('creates a missing output folder, and refuses a folder as the output before reading the corpus', async () => {
    const corpus = path.join(scratch, 'one.jsonl');
    await writeFile(corpus, `${JSON.stringify({ text: 'One document.' })}\n`);
    const out = path.join(scratch, 'new', 'deeper', 'one.tokens');
    const result = await tokenizeCorpus({ tokenizer: corpusDir, corpus: [corpus], out });
    expect(result).toMatchObject({ documents: 1, shard: { path: out } });
    expect(statSync(out).isFile()).toBe(true);
    // The corpus named here does not exist: the output is refused before it is looked at.
    await expect(tokenizeCorpus({ tokenizer: corpusDir, corpus: [path.join(scratch, 'no-such-corpus.jsonl')], out: scratch })).rejects.toThrow(
      /--out .*: is a folder; name a file/,
    );
  });
});
