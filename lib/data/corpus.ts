/**
 * Text documents from corpus files, streamed in a fixed order: the text side of the activation
 * pipeline (lib/data/contexts.ts tokenises them into contexts).
 *
 * Formats, chosen by extension (case-insensitive):
 * - `.jsonl`, `.ndjson`: one document per line, the string in field `textField` of the line's
 *   JSON object. Blank lines are passed over silently.
 * - `.parquet`: one document per row of the `textField` column (read by hyparquet, one row group
 *   at a time, only that column's bytes).
 * - anything else: a text file, read as UTF-8; the whole file is one document.
 * Every document longer than `maxDocumentChars` UTF-16 code units is cut into pieces of at most
 * that many (preferring to cut after whitespace in the second half of a piece, never inside a
 * surrogate pair); each piece is delivered as a document of its own, marked `continued` after the
 * first. Files are streamed in 1 MiB reads and
 * never held whole: a text file's pieces are cut as the text arrives; at most one JSONL line, or
 * one row group of a Parquet file's text column, is in memory at a time.
 *
 * Bad input never stops a read midway; it is counted in the report's `skipped` list, one entry
 * per (file, kind of problem):
 * - a named path that does not exist, a folder that cannot be listed, or nothing matched at all:
 *   CorpusError from resolveCorpusFiles / readCorpus, before any document is read; but a named
 *   file that this process has resolved before (an earlier pass over the corpus) and that is gone
 *   now was removed while in use: it stays in the list and is skipped when read, as below;
 * - an empty file (0 bytes, or no text after a byte-order mark): 'empty file';
 * - a text file with a NUL byte in its first 64 KiB: skipped as not text (binary or compressed);
 * - invalid UTF-8: decoded with U+FFFD replacement characters and kept; the documents affected
 *   are counted under 'invalid UTF-8 (replaced)' (a text file counts once);
 * - a JSONL line that is not JSON, is not an object with a string `textField`, or whose text is
 *   empty; a Parquet row whose value is null, not a string, or empty: skipped, the reason naming
 *   the line (1-based) or row (0-based) of the first one;
 * - a JSONL line longer than MAX_JSONL_LINE_BYTES: skipped (it cannot be parsed piecewise);
 * - a file that cannot be opened or read (permissions, removed meanwhile, I/O error), a Parquet
 *   file that cannot be decoded (corrupt, an unsupported codec such as zstd, no `textField`
 *   column): skipped from that point on, with the error; what was read from it before stands.
 *   (Not a CorpusError: one bad file among thousands should not end a long run.)
 *
 * Folders are walked recursively; hidden entries (names starting with ".") are left out, symbolic
 * links to files are followed, symbolic links to folders are not.
 */
import { Buffer, isUtf8 } from 'node:buffer';
import { createReadStream, type Dirent } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';

import { parquetMetadataAsync, parquetRead, parquetSchema, type AsyncBuffer, type FileMetaData } from 'hyparquet';
import { glob, isDynamicPattern } from 'tinyglobby';

import { readFullyAt } from '../io/large-files.js';

export interface CorpusOptions {
  /** Files, folders (walked recursively, sorted) or globs (tinyglobby). */
  paths: string[];
  /** The JSONL field / Parquet column holding the text (default 'text'). */
  textField?: string;
  /** Longer documents are cut into pieces of at most this many characters (default 1_000_000). */
  maxDocumentChars?: number;
}

export interface CorpusDocument {
  /** Index into the file list of resolveCorpusFiles. */
  file: number;
  /** Index of the document among those read from this file (pieces of a cut document count one each). */
  index: number;
  text: string;
  /** Whether this is a later piece of a document cut at maxDocumentChars (it continues the one before). */
  continued: boolean;
}

/** What a file reader yields: a document, or a piece of one (continued: not its first). */
interface Piece {
  text: string;
  continued: boolean;
}

export interface CorpusReport {
  /** Files resolved. */
  files: number;
  /** Documents delivered (pieces counted one each). */
  documents: number;
  /** What was skipped or repaired, one entry per file and kind of problem. */
  skipped: { file: string; reason: string; count: number }[];
}

/** The corpus cannot be read at all: a missing path, an unlistable folder, no files matched. */
export class CorpusError extends Error {
  /** The path or patterns at fault. */
  readonly path: string;

  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super(`${path}: ${detail}`, options);
    this.name = 'CorpusError';
    this.path = path;
  }
}

export const CORPUS_DEFAULTS = { textField: 'text', maxDocumentChars: 1_000_000 } as const;

/** JSONL lines longer than this are skipped: JSON must be parsed whole (and V8 strings stop near 512 MiB). */
export const MAX_JSONL_LINE_BYTES = 256 * 1024 * 1024;

/** The reason recorded for documents decoded with replacement characters. */
export const INVALID_UTF8_REASON = 'invalid UTF-8 (replaced)';

/** What became of the input a report entry counts: documents with invalid UTF-8 are kept, the rest skipped. */
export function reportVerb(reason: string): 'repaired' | 'skipped' {
  return reason === INVALID_UTF8_REASON ? 'repaired' : 'skipped';
}

const READ_CHUNK_BYTES = 1 << 20;
/** How much of a text file's start is checked for a NUL byte. */
const BINARY_CHECK_BYTES = 64 * 1024;
const JSONL_EXTENSIONS = new Set(['.jsonl', '.ndjson']);
const PARQUET_EXTENSION = '.parquet';

const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
const UTF8_BOM = '\uFEFF';

export function corpusOptionsWithDefaults(options: CorpusOptions): Required<CorpusOptions> {
  if (typeof options !== 'object' || options === null) throw new TypeError('corpus options must be an object');
  const { paths } = options;
  if (!Array.isArray(paths) || paths.length === 0 || !paths.every((path) => typeof path === 'string' && path !== '')) {
    throw new TypeError('paths must be a non-empty array of file, folder or glob strings');
  }
  const textField = options.textField ?? CORPUS_DEFAULTS.textField;
  if (typeof textField !== 'string' || textField === '') throw new TypeError(`textField must be a non-empty string (got ${String(textField)})`);
  const maxDocumentChars = options.maxDocumentChars ?? CORPUS_DEFAULTS.maxDocumentChars;
  if (typeof maxDocumentChars !== 'number' || !Number.isSafeInteger(maxDocumentChars) || maxDocumentChars < 2) {
    throw new RangeError(`maxDocumentChars must be an integer >= 2 (got ${String(maxDocumentChars)})`);
  }
  return { paths: [...paths], textField, maxDocumentChars };
}

/** Every regular, non-hidden file under `dir`, following links to files but not to folders. */
async function walkFolder(dir: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw new CorpusError(dir, `cannot list the folder (${(error as Error).message})`, { cause: error });
  }
  const found: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await walkFolder(path)));
    else if (entry.isFile()) found.push(path);
    else if (entry.isSymbolicLink() && (await stat(path).catch(() => undefined))?.isFile() === true) found.push(path);
  }
  return found;
}

/**
 * Named files (absolute paths) that resolveCorpusFiles has found in this process. Each pass over a
 * corpus resolves its paths again (contexts.ts reopens the stream for every pass), and a file
 * among these that is missing then was removed while the corpus was in use.
 */
const namedFilesFound = new Set<string>();

/**
 * The corpus files named by `options.paths`, as absolute paths: in pattern order, each folder's or
 * glob's matches sorted, duplicates dropped (the first kept). A named file is taken whatever its
 * extension. Throws CorpusError for a path that neither exists nor is a glob, and when nothing
 * matched at all, except that a named file found by an earlier call in this process is kept
 * though it is gone (its reader skips it, counting it in the report): a run is not ended at its
 * next pass by a file removed meanwhile, and the stream's fingerprint (contexts.ts) still records
 * the change, so a saved position of one list is never resumed on the other.
 */
export async function resolveCorpusFiles(options: CorpusOptions): Promise<string[]> {
  const { paths } = corpusOptionsWithDefaults(options);
  const found: string[] = [];
  for (const pattern of paths) {
    let info;
    try {
      info = await stat(pattern);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        throw new CorpusError(pattern, `cannot be examined (${(error as Error).message})`, { cause: error });
      }
    }
    if (info?.isFile()) {
      namedFilesFound.add(resolve(pattern));
      found.push(resolve(pattern));
    } else if (info === undefined && namedFilesFound.has(resolve(pattern))) {
      found.push(resolve(pattern));
    } else if (info?.isDirectory()) {
      found.push(...(await walkFolder(resolve(pattern))).sort());
    } else if (info === undefined && isDynamicPattern(pattern)) {
      const matches = await glob(pattern, { absolute: true, onlyFiles: true, expandDirectories: false, dot: false });
      found.push(...matches.map((path) => resolve(path)).sort());
    } else if (info === undefined) {
      throw new CorpusError(pattern, 'no such file or folder');
    } else {
      throw new CorpusError(pattern, 'is neither a file nor a folder');
    }
  }
  const files = [...new Set(found)];
  if (files.length === 0) {
    throw new CorpusError(paths.join(', '), `no corpus files matched ${paths.map((path) => `"${path}"`).join(', ')}`);
  }
  return files;
}

/** Tallies of skipped or repaired input, merged per (file, kind); the first occurrence names the reason. */
class SkipLog {
  readonly #report: CorpusReport;
  readonly #entries = new Map<string, { file: string; reason: string; count: number }>();

  constructor(report: CorpusReport) {
    this.#report = report;
  }

  add(file: string, kind: string, reason: string, count = 1): void {
    const key = `${file}\u0000${kind}`;
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      entry.count += count;
      return;
    }
    const created = { file, reason, count };
    this.#entries.set(key, created);
    this.#report.skipped.push(created);
  }
}

/** `text` cut into pieces of at most `max` characters (see the file header); `continuing`: it is itself the rest of a document. */
function* cutDocument(text: string, max: number, continuing = false): Generator<Piece> {
  let rest = text;
  let continued = continuing;
  while (rest.length > max) {
    const cut = cutPoint(rest, max);
    yield { text: rest.slice(0, cut), continued };
    rest = rest.slice(cut);
    continued = true;
  }
  if (rest.length > 0) yield { text: rest, continued };
}

/** Where to end a piece of at most `max` characters of `text` (longer than `max`). */
function cutPoint(text: string, max: number): number {
  const lowest = Math.ceil(max / 2);
  for (let end = max; end >= lowest; end--) {
    const before = text.charCodeAt(end - 1);
    if (before === 0x0a || before === 0x20 || before === 0x09 || before === 0x0d) return end;
  }
  // No whitespace: a hard cut, moved back one if it would split a surrogate pair.
  const before = text.charCodeAt(max - 1);
  return before >= 0xd800 && before <= 0xdbff ? max - 1 : max;
}

/** The length of `bytes` without a trailing, possibly incomplete UTF-8 sequence. */
function completeUtf8Length(bytes: Uint8Array): number {
  const end = bytes.length;
  for (let back = 1; back <= Math.min(3, end); back++) {
    const byte = bytes[end - back]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: keep looking for the lead byte
    const needed = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return needed > back ? end - back : end;
  }
  return end;
}

/** UTF-8 text and whether it was valid (invalid bytes become U+FFFD). */
function decodeUtf8(bytes: Uint8Array): { text: string; valid: boolean } {
  return { text: utf8.decode(bytes), valid: isUtf8(bytes) };
}

/**
 * Byte chunks of a file; errors (opening or reading) surface from next(). Reading stops when the
 * consumer does.
 */
function fileChunks(path: string): AsyncIterator<Buffer> {
  return createReadStream(path, { highWaterMark: READ_CHUNK_BYTES })[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
}

/** The next chunk, or null at the end; a read error is logged and ends the file. */
async function nextChunk(chunks: AsyncIterator<Buffer>, onError: (error: Error) => void): Promise<Buffer | null> {
  try {
    const result = await chunks.next();
    return result.done === true ? null : result.value;
  } catch (error) {
    onError(error as Error);
    return null;
  }
}

function describeError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && !error.message.startsWith(code) ? `${code}: ${error.message}` : error.message;
}

interface FileReader {
  (path: string, options: Required<CorpusOptions>, skip: SkipLog): AsyncGenerator<Piece>;
}

/** A text file: one document, decoded as it streams in and cut into pieces as they fill. */
async function* readTextFile(path: string, options: Required<CorpusOptions>, skip: SkipLog): AsyncGenerator<Piece> {
  const chunks = fileChunks(path);
  let failed = false;
  const unreadable = (error: Error): void => {
    failed = true;
    skip.add(path, 'unreadable', `cannot be read (${describeError(error)})`);
  };
  let pending = '';
  let carry: Buffer = Buffer.alloc(0);
  let first = true;
  let sawText = false;
  let invalid = false;
  /** Whether a piece of the file's text has been yielded (the file is one document). */
  let cutAlready = false;
  try {
    for (;;) {
      const chunk = await nextChunk(chunks, unreadable);
      if (chunk === null) break;
      if (first) {
        first = false;
        if (chunk.subarray(0, BINARY_CHECK_BYTES).includes(0)) {
          skip.add(path, 'binary', `not text: a NUL byte in the first ${BINARY_CHECK_BYTES / 1024} KiB (binary or compressed?)`);
          return;
        }
      }
      const bytes = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
      const complete = completeUtf8Length(bytes);
      carry = Buffer.from(bytes.subarray(complete));
      const decoded = decodeUtf8(bytes.subarray(0, complete));
      invalid ||= !decoded.valid;
      pending += decoded.text;
      if (!sawText && pending.startsWith(UTF8_BOM)) pending = pending.slice(1);
      if (pending.length > 0) sawText = true;
      while (pending.length > options.maxDocumentChars) {
        const cut = cutPoint(pending, options.maxDocumentChars);
        yield { text: pending.slice(0, cut), continued: cutAlready };
        pending = pending.slice(cut);
        cutAlready = true;
      }
    }
    if (carry.length > 0) {
      const decoded = decodeUtf8(carry); // an incomplete sequence at the end of the file
      invalid ||= !decoded.valid;
      pending += decoded.text;
      if (!sawText && pending.startsWith(UTF8_BOM)) pending = pending.slice(1);
      if (pending.length > 0) sawText = true;
    }
    if (invalid) skip.add(path, 'utf8', INVALID_UTF8_REASON);
    if (!sawText && !failed) skip.add(path, 'empty', first ? 'empty file' : 'empty file (no text after the byte-order mark)');
    yield* cutDocument(pending, options.maxDocumentChars, cutAlready);
  } finally {
    await chunks.return?.();
  }
}

/** A JSONL file: one document per line, split on newline bytes as the file streams in. */
async function* readJsonlFile(path: string, options: Required<CorpusOptions>, skip: SkipLog): AsyncGenerator<Piece> {
  const chunks = fileChunks(path);
  const field = options.textField;
  let lineNumber = 0;
  let anyBytes = false;
  /** Bytes of the line not yet ended by a newline. */
  let parts: Buffer[] = [];
  let partBytes = 0;
  /** The current line is too long and is being passed over up to its newline. */
  let discarding = false;
  let failed = false;

  const parseLine = (bytes: Buffer): string | null => {
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.length - 1 : bytes.length;
    const { text: line, valid } = decodeUtf8(bytes.subarray(0, end));
    if (line.trim() === '') return null;
    let value: unknown;
    try {
      value = JSON.parse(line.startsWith(UTF8_BOM) ? line.slice(1) : line);
    } catch {
      skip.add(path, 'json', `not JSON (first at line ${lineNumber})`);
      return null;
    }
    const text = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[field] : undefined;
    if (typeof text !== 'string') {
      skip.add(path, 'field', `no string "${field}" field (first at line ${lineNumber})`);
      return null;
    }
    if (text === '') {
      skip.add(path, 'empty-text', `empty "${field}" (first at line ${lineNumber})`);
      return null;
    }
    // The repair reached the text (not only another field; a text with a U+FFFD of its own beside
    // invalid bytes elsewhere on its line counts too).
    if (!valid && text.includes('\uFFFD')) skip.add(path, 'utf8', INVALID_UTF8_REASON);
    return text;
  };
  const tooLong = (line: number): void =>
    skip.add(path, 'long', `line longer than ${MAX_JSONL_LINE_BYTES / 2 ** 20} MiB (first at line ${line})`);

  try {
    for (;;) {
      const chunk = await nextChunk(chunks, (error) => {
        failed = true;
        skip.add(path, 'unreadable', `cannot be read (${describeError(error)})`);
      });
      if (chunk === null) break;
      anyBytes ||= chunk.length > 0;
      let start = 0;
      for (;;) {
        const newline = chunk.indexOf(0x0a, start);
        if (newline < 0) break;
        lineNumber++;
        if (discarding) {
          discarding = false;
        } else if (partBytes + newline - start > MAX_JSONL_LINE_BYTES) {
          tooLong(lineNumber); // its newline is here: already counted
        } else {
          const piece = chunk.subarray(start, newline);
          const line = parts.length === 0 ? piece : Buffer.concat([...parts, piece]);
          const text = parseLine(line);
          if (text !== null) yield* cutDocument(text, options.maxDocumentChars);
        }
        parts = [];
        partBytes = 0;
        start = newline + 1;
      }
      if (!discarding && start < chunk.length) {
        partBytes += chunk.length - start;
        if (partBytes > MAX_JSONL_LINE_BYTES) {
          tooLong(lineNumber + 1); // the line has no newline yet, so it is not counted yet
          discarding = true;
          parts = [];
          partBytes = 0;
        } else {
          parts.push(Buffer.from(chunk.subarray(start)));
        }
      }
    }
    if (parts.length > 0 && !failed) {
      lineNumber++;
      const text = parseLine(Buffer.concat(parts)); // a last line without a newline
      if (text !== null) yield* cutDocument(text, options.maxDocumentChars);
    }
    if (!anyBytes && !failed) skip.add(path, 'empty', 'empty file');
  } finally {
    await chunks.return?.();
  }
}

/** Text decoded from a Parquet value that was not valid UTF-8. */
class ReplacedText {
  constructor(readonly text: string) {}
}

/** hyparquet's string parser, marking values that needed replacement characters. */
function parseParquetString(bytes: Uint8Array | undefined): string | ReplacedText | undefined {
  if (bytes === undefined) return undefined;
  const { text, valid } = decodeUtf8(bytes);
  return valid ? text : new ReplacedText(text);
}

/** A Parquet file: one document per row of the text column, read one row group at a time. */
async function* readParquetFile(path: string, options: Required<CorpusOptions>, skip: SkipLog): AsyncGenerator<Piece> {
  const field = options.textField;
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    skip.add(path, 'unreadable', `cannot be read (${describeError(error as Error)})`);
    return;
  }
  try {
    const byteLength = (await handle.stat()).size;
    if (byteLength === 0) {
      skip.add(path, 'empty', 'empty file');
      return;
    }
    const opened = handle;
    const file: AsyncBuffer = {
      byteLength,
      async slice(start: number, end?: number): Promise<ArrayBuffer> {
        const stop = Math.min(end ?? byteLength, byteLength);
        const buffer = new ArrayBuffer(Math.max(0, stop - start));
        await readFullyAt(opened, new Uint8Array(buffer), start, (byte) => new Error(`unexpected end of file at byte ${byte}`));
        return buffer;
      },
    };
    let metadata: FileMetaData;
    try {
      metadata = await parquetMetadataAsync(file);
    } catch (error) {
      skip.add(path, 'parquet', `not a readable Parquet file (${describeError(error as Error)})`);
      return;
    }
    const columns = parquetSchema(metadata).children.map((child) => child.element.name);
    if (!columns.includes(field)) {
      skip.add(path, 'parquet', `no column "${field}" (columns: ${columns.join(', ')})`);
      return;
    }
    if (Number(metadata.num_rows) === 0) {
      skip.add(path, 'empty', 'no rows');
      return;
    }
    let groupStart = 0;
    for (const [group, rowGroup] of metadata.row_groups.entries()) {
      const groupRows = Number(rowGroup.num_rows);
      let values: unknown[] = [];
      try {
        await parquetRead({
          file,
          metadata,
          columns: [field],
          rowStart: groupStart,
          rowEnd: groupStart + groupRows,
          parsers: { stringFromBytes: parseParquetString },
          onComplete: (rows: unknown[][]) => {
            values = rows.map((row) => row[0]);
          },
        });
      } catch (error) {
        skip.add(path, 'parquet', `cannot be decoded from row group ${group} (rows ${groupStart} on): ${describeError(error as Error)}`);
        return;
      }
      for (const [i, value] of values.entries()) {
        const row = groupStart + i;
        const text = value instanceof ReplacedText ? value.text : value;
        if (typeof text !== 'string') {
          skip.add(path, 'field', `null or non-string "${field}" value (first at row ${row})`);
          continue;
        }
        if (text === '') {
          skip.add(path, 'empty-text', `empty "${field}" (first at row ${row})`);
          continue;
        }
        if (value instanceof ReplacedText) skip.add(path, 'utf8', INVALID_UTF8_REASON);
        yield* cutDocument(text, options.maxDocumentChars);
      }
      groupStart += groupRows;
    }
  } finally {
    await handle.close();
  }
}

function readerFor(path: string): FileReader {
  const extension = extname(path).toLowerCase();
  if (JSONL_EXTENSIONS.has(extension)) return readJsonlFile;
  if (extension === PARQUET_EXTENSION) return readParquetFile;
  return readTextFile;
}

/**
 * The corpus's documents, file after file (in resolveCorpusFiles' order), each file's in order.
 * `report` (when given) is filled in as the reading goes: `files` once the paths are resolved,
 * `documents` and `skipped` as documents are delivered. Throws CorpusError only before the first
 * document (see resolveCorpusFiles); every later problem is counted in `report.skipped`.
 */
export async function* readCorpus(options: CorpusOptions, report?: CorpusReport): AsyncGenerator<CorpusDocument> {
  const resolved = corpusOptionsWithDefaults(options);
  const files = await resolveCorpusFiles(resolved);
  yield* readCorpusFiles(files, resolved, report);
}

/** readCorpus over an already resolved file list. */
export async function* readCorpusFiles(
  files: readonly string[],
  options: Required<CorpusOptions>,
  report: CorpusReport = { files: 0, documents: 0, skipped: [] },
): AsyncGenerator<CorpusDocument> {
  report.files = files.length;
  const skip = new SkipLog(report);
  for (const [file, path] of files.entries()) {
    let index = 0;
    for await (const { text, continued } of readerFor(path)(path, options, skip)) {
      report.documents++;
      yield { file, index: index++, text, continued };
    }
  }
}
