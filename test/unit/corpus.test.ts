/**
 * The corpus reader: which files a set of paths names, the documents each format gives (text,
 * JSONL, Parquet written by pyarrow in scripts/fixtures/make_corpus_fixture.py), documents cut at
 * maxDocumentChars, and every kind of bad input counted in the report instead of stopping the read.
 */
import { chmod, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  CorpusError,
  INVALID_UTF8_REASON,
  MAX_JSONL_LINE_BYTES,
  readCorpus,
  resolveCorpusFiles,
  type CorpusDocument,
  type CorpusOptions,
  type CorpusReport,
} from '../../lib/data/corpus.js';
import { packageRoot } from '../../lib/native/load.js';

const parquetFixtures = path.join(packageRoot(), 'test/fixtures/corpus');
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'monosemantic-corpus-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** Writes `files` (relative path → contents) under a fresh folder and returns its path. */
async function writeTree(name: string, files: Record<string, string | Uint8Array>): Promise<string> {
  const root = path.join(scratch, name);
  for (const [relative, contents] of Object.entries(files)) {
    const file = path.join(root, relative);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, contents);
  }
  return root;
}

async function readAll(options: CorpusOptions): Promise<{ documents: CorpusDocument[]; report: CorpusReport }> {
  const report: CorpusReport = { files: 0, documents: 0, skipped: [] };
  const documents: CorpusDocument[] = [];
  for await (const document of readCorpus(options, report)) documents.push(document);
  return { documents, report };
}

async function corpusError(promise: Promise<unknown>): Promise<CorpusError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CorpusError);
  return error as CorpusError;
}

/** A text of about `chars` characters of words with multi-byte letters, so 1 MiB reads end inside UTF-8 sequences. */
function longText(chars: number, separator = ' '): string {
  const words = ['naïve', 'résumé', '日本語', 'emoji🙂', 'plain', 'Ωmega'];
  const parts: string[] = [];
  let length = 0;
  for (let i = 0; length < chars; i++) {
    const word = `${words[i % words.length]!}${i}`;
    parts.push(word);
    length += word.length + separator.length;
  }
  return parts.join(separator);
}

describe('resolveCorpusFiles', () => {
  it('walks folders recursively in sorted order, leaves hidden entries out, expands globs and drops duplicates', async () => {
    const root = await writeTree('resolve', {
      'b.txt': 'b',
      'a.txt': 'a',
      'sub/c.jsonl': '{"text":"c"}\n',
      'sub/deeper/d.md': 'd',
      '.hidden.txt': 'hidden',
      '.git/config': 'hidden folder',
    });
    const files = await resolveCorpusFiles({ paths: [root] });
    expect(files).toEqual(['a.txt', 'b.txt', 'sub/c.jsonl', 'sub/deeper/d.md'].map((name) => path.join(root, name)));

    const globbed = await resolveCorpusFiles({ paths: [path.join(root, 'sub/**/*'), path.join(root, 'b.txt'), root] });
    expect(globbed).toEqual(['sub/c.jsonl', 'sub/deeper/d.md', 'b.txt', 'a.txt'].map((name) => path.join(root, name)));
  });

  it('names a missing path, and the patterns when nothing matched', async () => {
    const missing = path.join(scratch, 'no-such-file.txt');
    const error = await corpusError(resolveCorpusFiles({ paths: [missing] }));
    expect(error.path).toBe(missing);
    expect(error.message).toContain('no such file or folder');

    const empty = path.join(scratch, 'empty-folder');
    await mkdir(empty, { recursive: true });
    const pattern = path.join(scratch, 'nothing-*.jsonl');
    const none = await corpusError(resolveCorpusFiles({ paths: [pattern, empty] }));
    expect(none.message).toContain(`"${pattern}"`);
    expect(none.message).toContain(`"${empty}"`);
    expect(none.message).toContain('no corpus files matched');

    // readCorpus raises the same before any document.
    await corpusError(readAll({ paths: [missing] }));
  });

  it('rejects bad options', async () => {
    await expect(resolveCorpusFiles({ paths: [] })).rejects.toThrow(TypeError);
    await expect(resolveCorpusFiles({ paths: [scratch], maxDocumentChars: 1 })).rejects.toThrow(/maxDocumentChars/);
    await expect(resolveCorpusFiles({ paths: [scratch], textField: '' })).rejects.toThrow(/textField/);
  });
});

describe('readCorpus: text files', () => {
  it('gives one document per file, in file order, without a byte-order mark', async () => {
    const root = await writeTree('text', {
      'one.txt': 'First file.\n\nSecond paragraph of the first file.\n',
      'two.md': '\uFEFF# Title\n\nMarkdown body.',
      'three': 'No extension.',
    });
    const { documents, report } = await readAll({ paths: [root] });
    expect(documents).toEqual([
      { file: 0, index: 0, text: 'First file.\n\nSecond paragraph of the first file.\n', continued: false },
      { file: 1, index: 0, text: 'No extension.', continued: false },
      { file: 2, index: 0, text: '# Title\n\nMarkdown body.', continued: false },
    ]);
    expect(report).toEqual({ files: 3, documents: 3, skipped: [] });
  });

  it('cuts a 5 MB single-line document into pieces of at most maxDocumentChars, losing nothing', async () => {
    const text = longText(5_000_000);
    expect(Buffer.byteLength(text)).toBeGreaterThan(5_000_000);
    const file = path.join(scratch, 'long-line.txt');
    await writeFile(file, text);
    const { documents, report } = await readAll({ paths: [file] });
    expect(documents.length).toBeGreaterThanOrEqual(5);
    expect(documents.map((d) => d.index)).toEqual(documents.map((_, i) => i));
    expect(documents.map((d) => d.continued)).toEqual(documents.map((_, i) => i > 0)); // one document, in pieces
    for (const document of documents) expect(document.text.length).toBeLessThanOrEqual(1_000_000);
    for (const document of documents.slice(0, -1)) expect(document.text.length).toBeGreaterThanOrEqual(500_000);
    // Cut after a space, and never inside a surrogate pair.
    for (const document of documents.slice(0, -1)) expect(document.text.endsWith(' ')).toBe(true);
    expect(documents.map((d) => d.text).join('')).toBe(text);
    expect(report.skipped).toEqual([]); // multi-byte characters across 1 MiB reads are not invalid
  });

  it('makes hard cuts where there is no whitespace, keeping surrogate pairs whole', async () => {
    const text = '🙂'.repeat(40) + 'x'.repeat(35);
    const file = path.join(scratch, 'no-spaces.txt');
    await writeFile(file, text);
    const { documents } = await readAll({ paths: [file], maxDocumentChars: 25 });
    for (const document of documents) {
      expect(document.text.length).toBeLessThanOrEqual(25);
      expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(document.text)).toBe(false); // no lone surrogate
    }
    expect(documents.map((d) => d.text).join('')).toBe(text);
  });

  it('counts empty files, skips binary files, and replaces invalid UTF-8 (counting it)', async () => {
    const root = await writeTree('bad-text', {
      'a-empty.txt': '',
      'b-bom-only.txt': '\uFEFF',
      'c-binary.bin': new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x01, 0x02]),
      'd-invalid.txt': new Uint8Array([...Buffer.from('bad '), 0xff, ...Buffer.from(' byte and a cut sequence '), 0xe6, 0x97]),
      'e-good.txt': 'Good text.',
    });
    const { documents, report } = await readAll({ paths: [root] });
    expect(documents).toEqual([
      { file: 3, index: 0, text: 'bad \uFFFD byte and a cut sequence \uFFFD', continued: false },
      { file: 4, index: 0, text: 'Good text.', continued: false },
    ]);
    expect(report.files).toBe(5);
    expect(report.documents).toBe(2);
    expect(report.skipped).toEqual([
      { file: path.join(root, 'a-empty.txt'), reason: 'empty file', count: 1 },
      { file: path.join(root, 'b-bom-only.txt'), reason: 'empty file (no text after the byte-order mark)', count: 1 },
      { file: path.join(root, 'c-binary.bin'), reason: expect.stringContaining('not text: a NUL byte') as string, count: 1 },
      { file: path.join(root, 'd-invalid.txt'), reason: INVALID_UTF8_REASON, count: 1 },
    ]);
  });
});

describe('readCorpus: JSONL', () => {
  it('gives one document per line and counts bad lines, naming the first of each kind', async () => {
    const lines = [
      JSON.stringify({ text: 'line one', id: 1 }),
      'this is not json',
      JSON.stringify({ body: 'no text field' }),
      '',
      JSON.stringify({ text: 'line five\nwith a newline inside', meta: { x: 1 } }) + '\r',
      '{"text": "broken',
      JSON.stringify({ text: 42 }),
      JSON.stringify({ text: '' }),
      JSON.stringify(['an', 'array']),
      '   ',
      JSON.stringify({ text: 'last line, no newline at the end' }),
    ];
    const file = path.join(scratch, 'docs.jsonl');
    await writeFile(file, lines.join('\n'));
    const { documents, report } = await readAll({ paths: [file] });
    expect(documents.map((d) => d.text)).toEqual(['line one', 'line five\nwith a newline inside', 'last line, no newline at the end']);
    expect(documents.map((d) => d.index)).toEqual([0, 1, 2]);
    expect(report.skipped).toEqual([
      { file, reason: 'not JSON (first at line 2)', count: 2 },
      { file, reason: 'no string "text" field (first at line 3)', count: 3 },
      { file, reason: 'empty "text" (first at line 8)', count: 1 },
    ]);
  });

  it('reads another field, replaces invalid UTF-8 per line, cuts a 5 MB line, and counts an empty file', async () => {
    const long = longText(5_000_000);
    const bytes = Buffer.concat([
      Buffer.from(JSON.stringify({ content: 'short' }) + '\n'),
      Buffer.from('{"content": "bad '),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}\n'),
      Buffer.from(JSON.stringify({ content: long }) + '\n'),
    ]);
    const root = await writeTree('jsonl', { 'a.ndjson': bytes, 'b.jsonl': '' });
    const { documents, report } = await readAll({ paths: [root], textField: 'content' });
    expect(documents[0]!.text).toBe('short');
    expect(documents[1]!.text).toBe('bad \uFFFD(');
    const pieces = documents.slice(2);
    expect(pieces.length).toBeGreaterThanOrEqual(5);
    expect(documents.map((d) => d.continued)).toEqual(documents.map((_, i) => i > 2)); // the third line's pieces
    expect(pieces.every((d) => d.text.length <= 1_000_000)).toBe(true);
    expect(pieces.map((d) => d.text).join('')).toBe(long);
    expect(report.skipped).toEqual([
      { file: path.join(root, 'a.ndjson'), reason: INVALID_UTF8_REASON, count: 1 },
      { file: path.join(root, 'b.jsonl'), reason: 'empty file', count: 1 },
    ]);
  });

  it('skips a line longer than MAX_JSONL_LINE_BYTES, naming that line, and goes on with the next', async () => {
    const file = path.join(scratch, 'long-line.jsonl');
    await writeFile(file, '{"text":"first"}\n');
    // Line 2: NUL bytes (a sparse hole: nothing is written) up to past the limit, then line 3.
    const handle = await open(file, 'r+');
    await handle.write('\n{"text":"third"}\n', MAX_JSONL_LINE_BYTES + 2 ** 20, 'utf8');
    await handle.close();
    const { documents, report } = await readAll({ paths: [file] });
    expect(documents.map((d) => d.text)).toEqual(['first', 'third']);
    expect(report.skipped).toEqual([{ file, reason: 'line longer than 256 MiB (first at line 2)', count: 1 }]);
  });
});

describe('readCorpus: Parquet', () => {
  it('gives one document per row of the text column, row group after row group', async () => {
    const file = path.join(parquetFixtures, 'docs.parquet');
    const { documents, report } = await readAll({ paths: [file] });
    expect(documents.map((d) => d.text)).toEqual([
      'The first parquet row.',
      'Row one: résumé, naïve, 日本語, and an emoji 🙂.',
      'Row two spans\ntwo lines.',
      'Row three starts the second row group.',
      'Row five follows a null.',
      'Row seven is the last row.',
    ]);
    expect(report.skipped).toEqual([
      { file, reason: 'null or non-string "text" value (first at row 4)', count: 1 },
      { file, reason: 'empty "text" (first at row 6)', count: 1 },
    ]);
  });

  it('replaces invalid UTF-8 in a binary column, and skips a zstd file and a missing column with the reason', async () => {
    const binary = path.join(parquetFixtures, 'binary.parquet');
    const zstd = path.join(parquetFixtures, 'zstd.parquet');
    const docs = path.join(parquetFixtures, 'docs.parquet');
    const { documents, report } = await readAll({ paths: [binary, zstd] });
    expect(documents.map((d) => d.text)).toEqual(['A binary row.', 'Bad bytes: \uFFFD\uFFFD end.', 'Another binary row.']);
    expect(report.skipped).toEqual([
      { file: binary, reason: INVALID_UTF8_REASON, count: 1 },
      { file: zstd, reason: expect.stringMatching(/^cannot be decoded from row group 0 \(rows 0 on\): .*ZSTD/) as string, count: 1 },
    ]);

    const wrongField = await readAll({ paths: [docs], textField: 'body' });
    expect(wrongField.documents).toEqual([]);
    expect(wrongField.report.skipped).toEqual([{ file: docs, reason: 'no column "body" (columns: id, text)', count: 1 }]);

    const numbers = await readAll({ paths: [docs], textField: 'id' });
    expect(numbers.documents).toEqual([]);
    expect(numbers.report.skipped).toEqual([{ file: docs, reason: 'null or non-string "id" value (first at row 0)', count: 8 }]);
  });

  it('skips a file that is not Parquet', async () => {
    const file = path.join(scratch, 'fake.parquet');
    await writeFile(file, 'this is not a parquet file at all');
    const { documents, report } = await readAll({ paths: [file] });
    expect(documents).toEqual([]);
    expect(report.skipped).toEqual([{ file, reason: expect.stringMatching(/^not a readable Parquet file/) as string, count: 1 }]);
  });
});

describe('readCorpus: unreadable files', () => {
  it('skips a file that disappears before it is read, and goes on with the next', async () => {
    const root = await writeTree('vanishing', { 'a.txt': 'first', 'b.txt': 'second', 'c.jsonl': '{"text":"third"}\n', 'd.parquet': 'x' });
    const report: CorpusReport = { files: 0, documents: 0, skipped: [] };
    const texts: string[] = [];
    for await (const document of readCorpus({ paths: [root] }, report)) {
      if (document.text === 'first') {
        await rm(path.join(root, 'b.txt'));
        await rm(path.join(root, 'c.jsonl'));
        await rm(path.join(root, 'd.parquet'));
      }
      texts.push(document.text);
    }
    expect(texts).toEqual(['first']);
    expect(report.skipped.map((entry) => [path.basename(entry.file), entry.count])).toEqual([
      ['b.txt', 1],
      ['c.jsonl', 1],
      ['d.parquet', 1],
    ]);
    for (const entry of report.skipped) expect(entry.reason).toMatch(/^cannot be read \(ENOENT/);
  });

  it('keeps a named file removed after an earlier resolution (a later pass), skipping it when read', async () => {
    const root = await writeTree('removed-between-passes', { 'a.jsonl': '{"text":"kept"}\n', 'b.txt': 'removed' });
    const options = { paths: [path.join(root, 'a.jsonl'), path.join(root, 'b.txt')] };
    expect((await readAll(options)).documents.map((d) => d.text)).toEqual(['kept', 'removed']);
    await rm(path.join(root, 'b.txt'));
    expect(await resolveCorpusFiles(options)).toEqual(options.paths);
    const { documents, report } = await readAll(options);
    expect(documents.map((d) => [d.file, d.text])).toEqual([[0, 'kept']]);
    expect(report.files).toBe(2);
    expect(report.skipped).toEqual([{ file: path.join(root, 'b.txt'), reason: expect.stringMatching(/^cannot be read \(ENOENT: no such file or directory/) as string, count: 1 }]);
    // A named file never found in this process is still an error.
    const never = path.join(root, 'never.txt');
    expect((await corpusError(resolveCorpusFiles({ paths: [path.join(root, 'a.jsonl'), never] }))).path).toBe(never);
  });

  it.skipIf(process.getuid?.() === 0)('skips a file without read permission (not testable as root)', async () => {
    const root = await writeTree('no-permission', { 'a.txt': 'locked', 'b.txt': 'open' });
    await chmod(path.join(root, 'a.txt'), 0o000);
    const { documents, report } = await readAll({ paths: [root] });
    expect(documents.map((d) => d.text)).toEqual(['open']);
    expect(report.skipped).toEqual([{ file: path.join(root, 'a.txt'), reason: expect.stringMatching(/^cannot be read \(EACCES/) as string, count: 1 }]);
  });
});
