/**
 * Tokenisation on worker threads (lib/data/tokenizer-pool.ts, lib/data/document-tokens.ts): the
 * same ids as Tokenizer.encode on the calling thread for every kind of text, in order however the
 * batches interleave; the documents ahead served in stream order; and a worker that cannot load
 * its tokenizer, or dies, fails the batches it held with an error naming the file, never a hang.
 */
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { tokensAhead, tokensInline, type DocumentTexts } from '../../lib/data/document-tokens.js';
import { TokenizerPool, TokenizerPoolError } from '../../lib/data/tokenizer-pool.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';

// The shipped model's tokenizer (8,192 ids, trained on the corpus) and the GPT-2-style fixture.
const tokenizerDirs = [path.join(packageRoot(), 'models/a'), path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied')];

const SAMPLES = [
  '',
  'Sparse autoencoders find features in activations.',
  'Café, naïve, résumé — 東京 🚀 emoji and accents.',
  'function f(x) {\n\treturn x * 2;   // spaces\n}\n\n\n',
  '    leading and trailing whitespace runs    ',
  'Subject: hello<|endoftext|>From: a@b.c\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=',
  '<html><body><p>Tags</p></body></html>',
];

/** Texts of random length from a mix of the samples and random code points. */
function randomTexts(count: number, seed: number): string[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const parts: string[] = [];
    const n = rng.int(12);
    for (let i = 0; i < n; i++) {
      parts.push(rng.uniform() < 0.6 ? SAMPLES[rng.int(SAMPLES.length)]! : String.fromCodePoint(32 + rng.int(0x3000)));
    }
    return parts.join(rng.uniform() < 0.5 ? ' ' : '');
  });
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'monosemantic-tokenizer-pool-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('TokenizerPool', () => {
  it.each(tokenizerDirs)('gives Tokenizer.encode ids for every text, batches in flight at once (%s)', async (dir) => {
    const tokenizer = await Tokenizer.load(dir);
    const pool = TokenizerPool.shared(tokenizer, 3);
    const batches = Array.from({ length: 12 }, (_, b) => (b === 0 ? SAMPLES : randomTexts(1 + b * 7, b)));
    const results = await Promise.all(batches.map((texts) => pool.encode(texts)));
    batches.forEach((texts, b) => {
      expect(results[b]!.length).toBe(texts.length);
      texts.forEach((text, k) => expect(Array.from(results[b]![k]!)).toEqual(Array.from(tokenizer.encode(text))));
    });
    // Text with the special token inside: matched as that token, as on the calling thread.
    const [special] = await pool.encode(['a<|endoftext|>b']);
    expect(Array.from(special!)).toContain(tokenizer.eosTokenId);
  });

  it('is shared per tokenizer file and grows to the largest thread count asked', async () => {
    const tokenizer = await Tokenizer.load(tokenizerDirs[0]!);
    const again = await Tokenizer.load(tokenizerDirs[0]!);
    const pool = TokenizerPool.shared(tokenizer, 1);
    expect(TokenizerPool.shared(again, 2)).toBe(pool);
    expect(pool.threads).toBeGreaterThanOrEqual(2);
    expect(() => TokenizerPool.shared(tokenizer, 0)).toThrow(/threads/);
    // Closed, it starts again on the next batch.
    await pool.close();
    expect(Array.from((await pool.encode(['after close']))[0]!)).toEqual(Array.from(tokenizer.encode('after close')));
  });

  it('does not keep a finished program alive, even with workers that never got a batch', () => {
    // A child process: three workers, one batch; it must exit by itself once the batch is done. It
    // runs as `node --input-type=module -e`, an option of the main script that workers must not inherit.
    const dist = (file: string) => JSON.stringify(pathToFileURL(path.join(packageRoot(), 'dist/lib', file)).href);
    const script = [
      `import { Tokenizer } from ${dist('lm/tokenizer.js')};`,
      `import { TokenizerPool } from ${dist('data/tokenizer-pool.js')};`,
      `const tokenizer = await Tokenizer.load(${JSON.stringify(tokenizerDirs[0])});`,
      `const [ids] = await TokenizerPool.shared(tokenizer, 3).encode(['one batch']);`,
      `console.log(ids.length);`,
    ].join('\n');
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(child.error, 'the process did not exit within 20 s').toBeUndefined();
    expect(child.status, child.stderr).toBe(0);
    expect(Number(child.stdout.trim())).toBeGreaterThan(0);
  });

  it('fails the batches of a worker that cannot load its tokenizer, naming the file', async () => {
    const dir = path.join(scratch, 'vanishing');
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    await copyFile(path.join(tokenizerDirs[0]!, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const tokenizer = await Tokenizer.load(dir);
    await rm(path.join(dir, 'tokenizer.json'));
    const pool = TokenizerPool.shared(tokenizer, 2);
    const failure = pool.encode(['one', 'two']);
    await expect(failure).rejects.toThrow(TokenizerPoolError);
    await expect(failure).rejects.toThrow(/vanishing.*tokenizer\.json/);
  });

  it('fails the batches in flight when its workers stop', async () => {
    const tokenizer = await Tokenizer.load(tokenizerDirs[1]!);
    const pool = TokenizerPool.shared(tokenizer, 2);
    const long = randomTexts(400, 9);
    const failed = expect(pool.encode(long)).rejects.toThrow(TokenizerPoolError);
    await pool.close();
    await failed;
  });
});

/** Texts served one by one, with a read that fails at `failAt` (if given). */
function textsOf(texts: string[], failAt = -1): DocumentTexts & { closed: boolean } {
  let next = 0;
  const source = {
    closed: false,
    next: async () => {
      await new Promise((resolve) => setTimeout(resolve, next % 17 === 0 ? 1 : 0));
      if (next === failAt) throw new Error(`unreadable document ${next}`);
      return next < texts.length ? texts[next++]! : null;
    },
    skip: async (count: number) => {
      next = Math.min(count, texts.length);
      return count <= texts.length;
    },
    close: async () => {
      source.closed = true;
    },
  };
  return source;
}

describe('tokensAhead', () => {
  it('serves the documents in order with their ids, the same as on the calling thread', async () => {
    const tokenizer = await Tokenizer.load(tokenizerDirs[0]!);
    const texts = [...randomTexts(700, 3), 'abc '.repeat(20_000), ...randomTexts(50, 4)]; // several batches, one over the batch size
    for (const ahead of [1, 2, 5]) {
      const inline = tokensInline(textsOf(texts), tokenizer);
      const pooled = tokensAhead(textsOf(texts), TokenizerPool.shared(tokenizer, 2), ahead);
      for (let k = 0; k <= texts.length; k++) {
        const [a, b] = await Promise.all([inline.next(), pooled.next()]);
        if (k === texts.length) {
          expect(a).toBeNull();
          expect(b).toBeNull();
        } else {
          expect(Array.from(b!)).toEqual(Array.from(a!));
        }
      }
      expect(await pooled.next()).toBeNull();
    }
  });

  it('skips documents before the first one it serves, and closes its texts', async () => {
    const tokenizer = await Tokenizer.load(tokenizerDirs[0]!);
    const texts = randomTexts(300, 5);
    const source = textsOf(texts);
    const pooled = tokensAhead(source, TokenizerPool.shared(tokenizer, 2));
    expect(await pooled.skip(250)).toBe(true);
    expect(Array.from((await pooled.next())!)).toEqual(Array.from(tokenizer.encode(texts[250]!)));
    expect(() => pooled.skip(1)).toThrow(/before the first next/);
    await pooled.close();
    expect(source.closed).toBe(true);
  });

  it('reports a failed read at its document, after serving the ones before it', async () => {
    const tokenizer = await Tokenizer.load(tokenizerDirs[0]!);
    const texts = randomTexts(600, 6);
    const pooled = tokensAhead(textsOf(texts, 450), TokenizerPool.shared(tokenizer, 2), 3);
    let served = 0;
    await expect(
      (async () => {
        for (;;) {
          if ((await pooled.next()) === null) return;
          served++;
        }
      })(),
    ).rejects.toThrow(/unreadable document 450/);
    // The batch holding document 450 fails as a whole: every document before that batch was served.
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThanOrEqual(450);
  });
});
