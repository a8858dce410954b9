/**
 * openCorpusContexts (lib/data/corpus-contexts.ts): which kind of corpus paths hold (token shards
 * given as files, folders or globs; text), the whole-shard check, what a text corpus skips (passed
 * to onSkip once per file and reason), and the error of a corpus that gives no context, which says
 * what was read and skipped.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ContextStreamError } from '../../lib/data/contexts.js';
import { openCorpusContexts, resolveCorpusPaths } from '../../lib/data/corpus-contexts.js';
import { TokenShardError, readTokenShardHeader, writeTokenShard } from '../../lib/data/token-shards.js';
import { defaultModelDir } from '../../lib/lm/default-model.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { Rng } from '../../lib/random.js';
import { tempDir } from '../helpers/run-fixtures.js';

const scratch = tempDir('corpus-contexts');
const shards = path.join(scratch, 'shards');
let tokenizer: Tokenizer;

beforeAll(async () => {
  tokenizer = await Tokenizer.load(defaultModelDir());
  mkdirSync(path.join(shards, 'more'), { recursive: true });
  const rng = new Rng(5);
  const tokens = (n: number) => Int32Array.from({ length: n }, () => 1 + rng.int(8000));
  await writeTokenShard(path.join(shards, 'b.tokens'), tokens(300), 8192);
  await writeTokenShard(path.join(shards, 'a.tokens'), tokens(200), 8192);
  await writeTokenShard(path.join(shards, 'more', 'c.tokens'), tokens(150), 8192);
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const sorted = () => [path.join(shards, 'a.tokens'), path.join(shards, 'b.tokens'), path.join(shards, 'more', 'c.tokens')].sort();

describe('resolveCorpusPaths', () => {
  it('finds the token shards of folders and globs, sorted; leaves text paths as given', async () => {
    expect(await resolveCorpusPaths([shards])).toEqual({ kind: 'shards', paths: sorted() });
    expect(await resolveCorpusPaths([path.join(shards, '**', '*.tokens')])).toEqual({ kind: 'shards', paths: sorted() });
    const upper = path.join(scratch, 'UPPER.TOKENS');
    expect(await resolveCorpusPaths([upper])).toEqual({ kind: 'shards', paths: [upper] });
    const text = path.join(scratch, 'notes.txt');
    writeFileSync(text, 'some text\n');
    expect(await resolveCorpusPaths([text, path.join(scratch, '*.md')])).toEqual({ kind: 'text', paths: [text, path.join(scratch, '*.md')] });
  });

  it('takes a path that exists as it is, glob characters in its name or not', async () => {
    const copy = path.join(scratch, 'data (copy) [1]');
    mkdirSync(copy);
    await writeTokenShard(path.join(copy, 'a.tokens'), Int32Array.of(1, 2, 3), 8192);
    expect(await resolveCorpusPaths([copy])).toEqual({ kind: 'shards', paths: [path.join(copy, 'a.tokens')] });
    // run[1].tokens names itself, not the run1.tokens its pattern would match.
    const named = path.join(scratch, 'run[1].tokens');
    await writeTokenShard(named, Int32Array.of(1, 2, 3), 8192);
    await writeTokenShard(path.join(scratch, 'run1.tokens'), Int32Array.of(4, 5, 6), 8192);
    expect(await resolveCorpusPaths([named])).toEqual({ kind: 'shards', paths: [named] });
  });

  it('names a mix of shards and text, within a folder or across paths', async () => {
    const mixed = path.join(scratch, 'mixed');
    mkdirSync(mixed, { recursive: true });
    writeFileSync(path.join(mixed, 'x.txt'), 'text\n');
    writeFileSync(path.join(mixed, 'y.tokens'), readFileSync(path.join(shards, 'a.tokens')));
    await expect(resolveCorpusPaths([mixed], 'data.paths')).rejects.toThrow(`data.paths: ${mixed} mixes token shards (.tokens) and other files (${path.join(mixed, 'x.txt')}); give one kind`);
    await expect(resolveCorpusPaths([shards, path.join(mixed, 'x.txt')], 'data.paths')).rejects.toThrow(/data.paths: mixes token shards/);
  });

  it('leaves out the temporary file a killed tokenize run left beside its shard', async () => {
    const folder = path.join(scratch, 'with-temp');
    mkdirSync(folder);
    await writeTokenShard(path.join(folder, 'a.tokens'), Int32Array.of(1, 2, 3), 8192);
    writeFileSync(path.join(folder, 'b.tokens.tmp-4194305-0123456789ab'), 'partial');
    expect(await resolveCorpusPaths([folder])).toEqual({ kind: 'shards', paths: [path.join(folder, 'a.tokens')] });
  });
});

describe('openCorpusContexts', () => {
  it('reads a folder of shards as the list of its files', async () => {
    const read = async (paths: string[]) => {
      const source = await openCorpusContexts({ paths, tokenizer, contextLength: 16, seed: 3 });
      try {
        expect(source.kind).toBe('shards');
        expect(source.report).toBeNull();
        return Array.from((await source.next(1000))!);
      } finally {
        await source.close?.();
      }
    };
    const viaFolder = await read([shards]);
    expect(viaFolder.length).toBeGreaterThan(0);
    expect(viaFolder).toEqual(await read(sorted()));
  });

  it('with verify, refuses a shard holding a token outside its vocabulary before serving anything', async () => {
    const bad = path.join(scratch, 'bad.tokens');
    const bytes = readFileSync(path.join(shards, 'a.tokens'));
    const header = await readTokenShardHeader(path.join(shards, 'a.tokens'));
    bytes.writeUInt16LE(9000, bytes.length - 2 * 17); // token 183 of 200 := 9000 >= 8192
    writeFileSync(bad, bytes);
    expect(header.vocabSize).toBe(8192);
    await expect(openCorpusContexts({ paths: [bad], tokenizer, contextLength: 16, seed: 0, verify: true })).rejects.toThrow(TokenShardError);
    await expect(openCorpusContexts({ paths: [bad], tokenizer, contextLength: 16, seed: 0, verify: true })).rejects.toThrow(/bad.tokens.*token 183 is 9000/);
    const unchecked = await openCorpusContexts({ paths: [bad], tokenizer, contextLength: 16, seed: 0 });
    await unchecked.close?.();
  });

  it('passes each skipped file and reason to onSkip once, and a corpus with no context says what it read and skipped', async () => {
    const dir = path.join(scratch, 'bad-text');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'nofield.jsonl'), '{"body": "a"}\n{"body": "b"}\n{"body": "c"}\n');
    writeFileSync(path.join(dir, 'binary.txt'), Buffer.from([0, 1, 2, 0, 255, 0, 3]));
    writeFileSync(path.join(dir, 'short.txt'), 'Only a few words here.\n');
    const seen: { file: string; reason: string }[] = [];
    const source = await openCorpusContexts({ paths: [dir], tokenizer, contextLength: 64, seed: 0, tokenizerThreads: 0, onSkip: (s) => seen.push(s) });
    try {
      const error = await source.next(4).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ContextStreamError);
      const message = (error as Error).message;
      expect(message).toMatch(/no whole context of 64 tokens \(3 files and 1 document read; skipped /);
      expect(message).toMatch(/nofield.jsonl: no string "text" field .*\(3\)/);
      expect(message).toMatch(/binary.txt: /);
    } finally {
      await source.close?.();
    }
    expect(seen.map((s) => path.basename(s.file)).sort()).toEqual(['binary.txt', 'nofield.jsonl']);
  });

  it('a stream resumed at the end of its corpus ends quietly', async () => {
    const text = path.join(scratch, 'story.txt');
    writeFileSync(text, 'The quick brown fox jumps over the lazy dog. '.repeat(40));
    const options = { paths: [text], tokenizer, contextLength: 32, seed: 0, tokenizerThreads: 0 };
    const source = await openCorpusContexts(options);
    let rows = 0;
    for (let ids = await source.next(8); ids !== null && ids.length > 0; ids = await source.next(8)) rows += ids.length / 32;
    const state = source.state();
    await source.close?.();
    expect(rows).toBeGreaterThan(3);
    const resumed = await openCorpusContexts({ ...options, state });
    try {
      const ids = await resumed.next(8);
      expect(ids === null || ids.length === 0).toBe(true);
    } finally {
      await resumed.close?.();
    }
  });
});
