/**
 * The context stream: documents packed into fixed-length contexts exactly as a plain reference
 * packer does (BOS first, EOS between documents, only the last partial context dropped), the
 * seeded document order, exact resumption from state(), and states refused for a changed corpus
 * or changed options. Tokenizer: the GPT-2-style fixture (<|endoftext|> = 300 is BOS and EOS).
 */
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ContextStreamError, openContextStream, type ContextStream, type ContextStreamOptions, type ContextStreamState } from '../../lib/data/contexts.js';
import { readCorpus, type CorpusOptions, type CorpusReport } from '../../lib/data/corpus.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';

const END_OF_TEXT = 300;
const modelDir = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');
const parquetFile = path.join(packageRoot(), 'test/fixtures/corpus/docs.parquet');

let tokenizer: Tokenizer;
let scratch: string;
/** A corpus of text files, JSONL (with bad lines) and Parquet: 20 documents after the JSONL's skips. */
let corpus: CorpusOptions;

const SENTENCES = [
  'Sparse autoencoders find features in activations.',
  'The quick brown fox jumps over the lazy dog.',
  'Monosemantic features respond to one concept each.',
  'Tokens are packed into contexts of fixed length.',
  'Café, naïve, résumé: accents survive the byte-level tokenizer.',
];

beforeAll(async () => {
  tokenizer = await Tokenizer.load(modelDir);
  scratch = await mkdtemp(path.join(tmpdir(), 'monosemantic-contexts-'));
  const root = path.join(scratch, 'corpus');
  await mkdir(path.join(root, 'texts'), { recursive: true });
  for (let i = 0; i < 8; i++) {
    const body = Array.from({ length: 1 + (i % 4) }, (_, j) => SENTENCES[(i + j) % SENTENCES.length]).join(' ');
    await writeFile(path.join(root, 'texts', `doc-${String(i).padStart(2, '0')}.txt`), `Text file ${i}. ${body}\n`);
  }
  await writeFile(path.join(root, 'texts', 'empty.txt'), '');
  const lines = [
    ...Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `JSON line ${i}: ${SENTENCES[i % SENTENCES.length]!}` })),
    'not json at all',
    JSON.stringify({ title: 'no text' }),
  ];
  await writeFile(path.join(root, 'lines.jsonl'), lines.join('\n') + '\n');
  corpus = { paths: [root, parquetFile] };
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function documentsOf(options: CorpusOptions): Promise<string[]> {
  const texts: string[] = [];
  for await (const document of readCorpus(options)) texts.push(document.text);
  return texts;
}

/**
 * The contexts of `documents` (in this order) by the rule in lib/data/contexts.ts, written the
 * plain way: one token array for the whole corpus, cut into rows.
 */
function referenceContexts(documents: string[], contextLength: number, bos: number | null, separator: number | null): number[][] {
  const tokens: number[] = [];
  const isSeparator: boolean[] = [];
  documents.forEach((text, i) => {
    if (separator !== null && i > 0) {
      tokens.push(separator);
      isSeparator.push(true);
    }
    for (const id of tokenizer.encode(text)) {
      tokens.push(id);
      isSeparator.push(false);
    }
  });
  const width = bos === null ? contextLength : contextLength - 1;
  const rows: number[][] = [];
  let position = 0;
  for (;;) {
    while (bos !== null && position < tokens.length && isSeparator[position]) position++;
    if (tokens.length - position < width) break;
    rows.push([...(bos === null ? [] : [bos]), ...tokens.slice(position, position + width)]);
    position += width;
  }
  return rows;
}

function rowsOf(batch: Int32Array, contextLength: number): number[][] {
  expect(batch.length % contextLength).toBe(0);
  const rows: number[][] = [];
  for (let start = 0; start < batch.length; start += contextLength) rows.push(Array.from(batch.subarray(start, start + contextLength)));
  return rows;
}

/** Every remaining context, read `batch` at a time. */
async function drain(stream: ContextStream, batch: number): Promise<number[][]> {
  const rows: number[][] = [];
  for (;;) {
    const next = await stream.next(batch);
    if (next === null) return rows;
    rows.push(...rowsOf(next, stream.contextLength));
  }
}

async function openStream(options: Partial<ContextStreamOptions> & { corpus?: CorpusOptions } = {}): Promise<ContextStream> {
  const { corpus: corpusOptions = corpus, ...rest } = options;
  return openContextStream(corpusOptions, { tokenizer, contextLength: 16, seed: 7, ...rest });
}

/** The text of the rows with each row's BOS left out, rows joined. */
function textOf(rows: number[][], bos: boolean): string {
  return tokenizer.decode(rows.flatMap((row) => (bos ? row.slice(1) : row)));
}

describe('openContextStream: packing', () => {
  it.each([
    { prependBos: true, separateDocuments: true, tokenizerThreads: 0 },
    { prependBos: false, separateDocuments: true, tokenizerThreads: 3 },
    { prependBos: true, separateDocuments: false, tokenizerThreads: 1 },
    { prependBos: false, separateDocuments: false, tokenizerThreads: 0 },
  ])('packs documents as the reference packer does (%o)', async (flags) => {
    const documents = await documentsOf(corpus);
    expect(documents.length).toBe(8 + 6 + 6);
    const stream = await openStream({ ...flags, shuffleDocuments: 1 });
    const rows = await drain(stream, 5);
    const expected = referenceContexts(documents, 16, flags.prependBos ? END_OF_TEXT : null, flags.separateDocuments ? END_OF_TEXT : null);
    expect(rows.length).toBeGreaterThan(20);
    expect(rows).toEqual(expected);
    expect(stream.state().contextsServed).toBe(rows.length);
  });

  it('starts every context with BOS, puts EOS between documents, and loses only the last partial context', async () => {
    const documents = await documentsOf(corpus);
    const stream = await openStream({ shuffleDocuments: 1 });
    const rows = await drain(stream, 4);
    for (const row of rows) {
      expect(row.length).toBe(16);
      expect(row[0]).toBe(END_OF_TEXT);
      expect(row[1]).not.toBe(END_OF_TEXT); // no separator straight after BOS
    }
    // Every document, whole and in order, separated by <|endoftext|> except where a context began.
    const text = textOf(rows, true);
    let from = 0;
    for (const [i, document] of documents.entries()) {
      const at = text.indexOf(document, from);
      if (i < documents.length - 1) {
        expect(at).toBeGreaterThanOrEqual(from);
        expect(['', '<|endoftext|>']).toContain(text.slice(from, at));
        from = at + document.length;
      } else {
        // The last document may be cut short by the dropped partial context: fewer than 15 tokens lost.
        const rest = text.slice(from).replace(/^(<\|endoftext\|>)?/, '');
        expect(document.startsWith(rest)).toBe(true);
        expect(tokenizer.encode(document.slice(rest.length)).length).toBeLessThan(15);
      }
    }
  });

  it('returns a short last batch, then null', async () => {
    const total = (await drain(await openStream({ shuffleDocuments: 1 }), 3)).length;
    const stream = await openStream({ shuffleDocuments: 1 });
    const batch = await stream.next(total + 10);
    expect(batch).not.toBeNull();
    expect(batch!.length).toBe(total * 16);
    expect(await stream.next(1)).toBeNull();
    expect(await stream.next(4)).toBeNull();

    const closed = await openStream({ shuffleDocuments: 1 });
    expect((await closed.next(2))!.length).toBe(2 * 16);
    await closed.close();
    expect(await closed.next(1)).toBeNull();
    await closed.close();
  });

  it('packs pieces of long documents cut at maxDocumentChars', async () => {
    const file = path.join(scratch, 'long.txt');
    await writeFile(file, SENTENCES.join(' ').repeat(400)); // about 100k characters
    const options = { paths: [file], maxDocumentChars: 20_000 };
    const documents = await documentsOf(options);
    expect(documents.length).toBeGreaterThanOrEqual(5);
    const stream = await openStream({ corpus: options, contextLength: 64, shuffleDocuments: 1 });
    expect(await drain(stream, 100)).toEqual(referenceContexts(documents, 64, END_OF_TEXT, END_OF_TEXT));
  });

  it('reports what the corpus reader skipped', async () => {
    const stream = await openStream();
    await drain(stream, 50);
    const report: CorpusReport = stream.report;
    expect(report.files).toBe(11);
    expect(report.documents).toBe(20);
    expect(report.skipped.map((entry) => [path.basename(entry.file), entry.reason, entry.count])).toEqual([
      ['lines.jsonl', 'not JSON (first at line 7)', 1],
      ['lines.jsonl', 'no string "text" field (first at line 8)', 1],
      ['empty.txt', 'empty file', 1],
      ['docs.parquet', 'null or non-string "text" value (first at row 4)', 1],
      ['docs.parquet', 'empty "text" (first at row 6)', 1],
    ]);
  });

  it('rejects bad options', async () => {
    await expect(openStream({ contextLength: 1 })).rejects.toThrow(/contextLength must be at least 2/);
    await expect(openStream({ contextLength: 0 })).rejects.toThrow(RangeError);
    await expect(openStream({ shuffleDocuments: 0 })).rejects.toThrow(/shuffleDocuments/);
    await expect(openStream({ seed: 1.5 })).rejects.toThrow(/seed/);
    await expect(openStream({ tokenizerThreads: -1 })).rejects.toThrow(/tokenizerThreads/);
    await expect(openStream({ tokenizerThreads: 1.5 })).rejects.toThrow(/tokenizerThreads/);
    const stream = await openStream({ prependBos: false, contextLength: 1 });
    expect(() => stream.next(0)).toThrow(/count/);
  });
});

describe('openContextStream: document order', () => {
  it('is the same for the same seed and another for another seed, shuffling only within windows', async () => {
    const documents = await documentsOf(corpus);
    const read = async (seed: number): Promise<number[][]> => drain(await openStream({ seed, shuffleDocuments: 4 }), 8);
    const first = await read(1);
    expect(await read(1)).toEqual(first);
    const other = await read(2);
    expect(other).not.toEqual(first);

    for (const rows of [first, other]) {
      const text = textOf(rows, true);
      // Each document once; documents of window w (4 at a time, file order) all before those of window w + 1.
      const positions = documents.map((document) => text.indexOf(document));
      documents.forEach((document, i) => {
        if (i < documents.length - 4) {
          expect(positions[i]).toBeGreaterThanOrEqual(0);
          expect(text.indexOf(document, positions[i]! + 1)).toBe(-1);
        }
      });
      for (let window = 0; window + 2 < documents.length / 4; window++) {
        const ends = positions.slice(window * 4, window * 4 + 4).map((at, k) => at + documents[window * 4 + k]!.length);
        const nextStarts = positions.slice(window * 4 + 4, window * 4 + 8);
        expect(Math.max(...ends)).toBeLessThanOrEqual(Math.min(...nextStarts));
      }
    }
    // Not all in file order.
    const inOrder = referenceContexts(documents, 16, END_OF_TEXT, END_OF_TEXT);
    expect(first).not.toEqual(inOrder);
  });
});

describe('openContextStream: resuming', () => {
  it('continues the identical stream from state() after any number of contexts, whichever thread tokenises', async () => {
    const options = { contextLength: 8, shuffleDocuments: 3, seed: 11 };
    const full = await drain(await openStream({ ...options, tokenizerThreads: 0 }), 1000);
    expect(full.length).toBeGreaterThan(40);
    for (const [k, served] of [0, 1, 2, 5, 13, 27, full.length - 1, full.length].entries()) {
      // Saved with workers and resumed without, and the other way round.
      const stream = await openStream({ ...options, tokenizerThreads: k % 2 === 0 ? 2 : 0 });
      const head: number[][] = [];
      while (head.length < served) head.push(...rowsOf((await stream.next(Math.min(3, served - head.length)))!, 8));
      const saved = JSON.parse(JSON.stringify(stream.state())) as ContextStreamState;
      expect(saved.contextsServed).toBe(served);
      expect(saved.seed).toBe(11);
      const resumed = await openStream({ ...options, state: saved, tokenizerThreads: k % 2 === 0 ? 0 : 2 });
      expect(resumed.state()).toEqual(saved);
      const tail = await drain(resumed, 4);
      expect([...head, ...tail]).toEqual(full);
      expect(resumed.state().contextsServed).toBe(full.length);
    }
  });

  it('saves positions inside documents, and tokenises only the document it resumes inside', async () => {
    const options = { contextLength: 8, shuffleDocuments: 1, seed: 3 };
    const stream = await openStream(options);
    await stream.next(9);
    const saved = stream.state();
    expect(saved.tokenOffset).toBeGreaterThan(0);
    const expectedTail = await drain(stream, 5);

    let encodes = 0;
    const counting = Object.create(tokenizer) as Tokenizer;
    counting.encode = (text: string) => {
      encodes++;
      return tokenizer.encode(text);
    };
    const resumed = await openContextStream(corpus, { tokenizer: counting, ...options, state: saved });
    // A replaced encode is run on the calling thread (workers would run the file's tokenizer).
    await expect(openContextStream(corpus, { tokenizer: counting, ...options, tokenizerThreads: 1 })).rejects.toThrow(/tokenizerThreads/);
    expect(encodes).toBe(1);
    expect(await drain(resumed, 5)).toEqual(expectedTail);
    expect(encodes).toBe(20 - saved.documentsConsumed);
  });

  it('refuses a state saved for another corpus, other options or another seed', async () => {
    const root = path.join(scratch, 'changing');
    await mkdir(root, { recursive: true });
    await writeFile(path.join(root, 'a.txt'), SENTENCES.join('\n'));
    await writeFile(path.join(root, 'b.txt'), SENTENCES.slice(1).join('\n'));
    const changing = { paths: [root] };
    const stream = await openStream({ corpus: changing, contextLength: 8 });
    await stream.next(2);
    const saved = stream.state();

    const refusal = async (options: Partial<ContextStreamOptions> & { corpus?: CorpusOptions }): Promise<ContextStreamError> => {
      const error = await openStream({ corpus: changing, contextLength: 8, state: saved, ...options }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ContextStreamError);
      expect((error as Error).message).toContain('the corpus or options changed');
      return error as ContextStreamError;
    };
    expect((await refusal({ contextLength: 9 })).message).toContain('contextLength (saved ctx8, now ctx9)');
    expect((await refusal({ prependBos: false })).message).toContain('prependBos');
    expect((await refusal({ separateDocuments: false })).message).toContain('separateDocuments');
    expect((await refusal({ shuffleDocuments: 2 })).message).toContain('shuffleDocuments');
    expect((await refusal({ corpus: { ...changing, maxDocumentChars: 100 } })).message).toContain('maxDocumentChars');
    expect((await refusal({ corpus: { ...changing, textField: 'body' } })).message).toContain('file names, textField or tokenizer');
    await expect(openStream({ corpus: changing, contextLength: 8, state: saved, seed: 8 })).rejects.toThrow(/state.seed 7 differs/);

    await appendFile(path.join(root, 'b.txt'), ' More text.');
    expect((await refusal({})).message).toContain('bytes');
    await writeFile(path.join(root, 'c.txt'), 'A new file.');
    expect((await refusal({})).message).toContain('files (saved 2f, now 3f)');
  });

  it('refuses a position past the end of the corpus', async () => {
    const stream = await openStream({ shuffleDocuments: 1 });
    const saved = stream.state();
    await expect(openStream({ shuffleDocuments: 1, state: { ...saved, documentsConsumed: 21 } })).rejects.toThrow(ContextStreamError);
    await expect(openStream({ shuffleDocuments: 1, state: { ...saved, documentsConsumed: 3, tokenOffset: 10_000 } })).rejects.toThrow(
      /tokenOffset 10000 is past the end of document 3/,
    );
    const atEnd = await openStream({ shuffleDocuments: 1, state: { ...saved, documentsConsumed: 20 } });
    expect(await atEnd.next(1)).toBeNull();
  });
});
