/**
 * Per-step training metrics as JSON Lines: one record per line, appended as training goes. A
 * crash can leave a torn last line, so readers skip it; a resumed run first cuts the log back to
 * its checkpoint's step so the log holds each step once. The log is auxiliary: that rewrite also
 * drops lines that are not records (a crash or power loss can leave NULs), with a warning, rather
 * than making the run impossible to resume.
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { writeFileAtomic } from '../io/atomic.js';
import { makeFolder } from '../io/folders.js';

/** One line of the log. Non-finite numbers are stored (and read back) as null. */
export interface MetricsRecord {
  step: number;
  /** Training samples seen so far. */
  samples: number;
  [key: string]: number | null | string;
}

export interface MetricsLogOptions {
  /**
   * For a resumed run: before appending, rewrite the file keeping only records with
   * step <= truncateAfterStep (and no torn last line, nor any other line that is not a record).
   */
  truncateAfterStep?: number;
  /** Hears, in one line, about lines the rewrite drops because they are not records (default: printed on stderr). */
  warn?: (message: string) => void;
}

/** Buffered lines past this many characters are written without waiting for flush(). */
const AUTO_FLUSH_CHARS = 1 << 20;

/** Appends MetricsRecords to a JSONL file. Lines are buffered until flush() or close(). */
export class MetricsLog {
  readonly path: string;
  private readonly file: FileHandle;
  private pendingLines: string[] = [];
  private pendingChars = 0;
  /** Writes run one after another in this chain. */
  private writeQueue: Promise<void> = Promise.resolve();
  /** The first write error; every later flush() and append() reports it. */
  private failure: unknown = undefined;
  private closing: Promise<void> | undefined;

  private constructor(filePath: string, file: FileHandle) {
    this.path = filePath;
    this.file = file;
  }

  /**
   * Opens (creating it and its folder when missing) the log at filePath for appending. A torn
   * last line left by a crash is dropped, or completed with its newline when it is a whole record.
   */
  static async open(filePath: string, options: MetricsLogOptions = {}): Promise<MetricsLog> {
    if (typeof filePath !== 'string' || filePath === '') {
      throw new TypeError('MetricsLog.open: path must be a non-empty string');
    }
    const { truncateAfterStep, warn = (message: string) => process.stderr.write(`${message}\n`) } = options;
    if (truncateAfterStep !== undefined && (typeof truncateAfterStep !== 'number' || !Number.isFinite(truncateAfterStep))) {
      throw new RangeError(`MetricsLog.open: truncateAfterStep must be a finite number (got ${String(truncateAfterStep)})`);
    }
    await makeFolder(path.dirname(filePath));
    if (truncateAfterStep !== undefined) {
      const text = await readTextIfExists(filePath);
      if (text !== undefined) {
        const { parsed, bad } = parseMetricsText(text);
        if (bad.length > 0) {
          const which = bad.length === 1 ? `line ${bad[0]!.number} that is not a metrics record` : `${bad.length} lines (first: line ${bad[0]!.number}) that are not metrics records`;
          warn(`metrics log ${filePath}: dropping ${which}: ${excerpt(bad[0]!.line)}`);
        }
        const kept = parsed.filter((entry) => entry.record.step <= truncateAfterStep);
        await writeFileAtomic(filePath, kept.map((entry) => entry.line + '\n').join(''));
      }
    }
    const file = await open(filePath, 'a+');
    try {
      await repairTornTail(file);
    } catch (error) {
      await file.close();
      throw error;
    }
    return new MetricsLog(filePath, file);
  }

  /** Queues one record. Non-finite numbers become null. */
  append(record: MetricsRecord): void {
    if (this.closing !== undefined) throw new Error(`MetricsLog.append: ${this.path} is closed`);
    if (this.failure !== undefined) throw this.failure;
    const line = serializeRecord(record);
    this.pendingLines.push(line);
    this.pendingChars += line.length;
    if (this.pendingChars >= AUTO_FLUSH_CHARS) {
      // The error, if any, is kept in this.failure and reported by the next append or flush.
      this.enqueueWrite(false).catch(() => undefined);
    }
  }

  /** Writes the buffered lines and fsyncs the file. */
  flush(): Promise<void> {
    return this.enqueueWrite(true);
  }

  /** Flushes and closes the file. Later calls return the same promise. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.enqueueWrite(true);
      } finally {
        await this.file.close();
      }
    })();
    return this.closing;
  }

  private enqueueWrite(sync: boolean): Promise<void> {
    const run = this.writeQueue.then(async () => {
      if (this.failure !== undefined) throw this.failure;
      const text = this.pendingLines.join('');
      this.pendingLines = [];
      this.pendingChars = 0;
      try {
        if (text !== '') await writeAll(this.file, Buffer.from(text, 'utf8'));
        if (sync) await this.file.sync();
      } catch (error) {
        this.failure = error;
        throw error;
      }
    });
    this.writeQueue = run.catch(() => undefined);
    return run;
  }
}

/** Every record of the log at filePath, in file order. A torn last line is skipped. */
export async function readMetrics(filePath: string): Promise<MetricsRecord[]> {
  if (typeof filePath !== 'string' || filePath === '') {
    throw new TypeError('readMetrics: path must be a non-empty string');
  }
  const { parsed, bad } = parseMetricsText(await readFile(filePath, 'utf8'));
  if (bad.length > 0) throw new Error(`metrics log ${filePath}, line ${bad[0]!.number}, is not a metrics record: ${excerpt(bad[0]!.line)}`);
  return parsed.map((entry) => entry.record);
}

interface ParsedLine {
  record: MetricsRecord;
  /** The line as stored, without its newline. */
  line: string;
}

/**
 * The records of a JSONL text, and its bad lines: those that are not records (1-based line
 * numbers). Blank lines are skipped. A last line with no newline after it that is not a record is
 * a torn write and is dropped without being counted as bad.
 */
function parseMetricsText(text: string): { parsed: ParsedLine[]; bad: { number: number; line: string }[] } {
  const lines = text.split('\n');
  const parsed: ParsedLine[] = [];
  const bad: { number: number; line: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '') continue;
    const record = parseRecord(line);
    if (record !== undefined) parsed.push({ record, line });
    else if (i < lines.length - 1) bad.push({ number: i + 1, line });
  }
  return { parsed, bad };
}

/** A bad line for a one-line message: at most 80 characters, control characters escaped. */
function excerpt(line: string): string {
  return JSON.stringify(line.length > 80 ? line.slice(0, 80) + '…' : line);
}

/** The record on one line, or undefined when the line is not one. */
function parseRecord(line: string): MetricsRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const fields = value as Record<string, unknown>;
  if (typeof fields.step !== 'number' || typeof fields.samples !== 'number') return undefined;
  for (const field of Object.values(fields)) {
    if (field !== null && typeof field !== 'number' && typeof field !== 'string') return undefined;
  }
  return fields as MetricsRecord;
}

/** One JSON line (with its newline) for a record, validating step, samples and value types. */
function serializeRecord(record: MetricsRecord): string {
  if (typeof record !== 'object' || record === null) {
    throw new TypeError('MetricsLog.append: record must be an object');
  }
  if (typeof record.step !== 'number' || !Number.isInteger(record.step) || record.step < 0) {
    throw new RangeError(`MetricsLog.append: record.step must be a non-negative integer (got ${String(record.step)})`);
  }
  if (typeof record.samples !== 'number' || !Number.isFinite(record.samples) || record.samples < 0) {
    throw new RangeError(`MetricsLog.append: record.samples must be a finite non-negative number (got ${String(record.samples)})`);
  }
  const out: Record<string, number | null | string> = {};
  for (const [key, value] of Object.entries(record)) {
    if (typeof value === 'number') {
      out[key] = Number.isFinite(value) ? value : null;
    } else if (value === null || typeof value === 'string') {
      out[key] = value;
    } else {
      throw new TypeError(`MetricsLog.append: record.${key} must be a number, a string or null (got ${typeof value})`);
    }
  }
  return JSON.stringify(out) + '\n';
}

async function readTextIfExists(filePath: string): Promise<string | undefined> {
  try {
    return await readFile(filePath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function writeAll(file: FileHandle, bytes: Buffer): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await file.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}

/**
 * When the file does not end in a newline, the last line was cut short by a crash: complete it
 * with a newline when it is still a whole record, otherwise cut it off, so that appended lines
 * start on a line of their own.
 */
async function repairTornTail(file: FileHandle): Promise<void> {
  const { size } = await file.stat();
  if (size === 0) return;
  const last = Buffer.alloc(1);
  await file.read(last, 0, 1, size - 1);
  if (last[0] === 0x0a) return;
  const tailStart = await lastNewlineEnd(file, size);
  const tail = Buffer.alloc(size - tailStart);
  await file.read(tail, 0, tail.length, tailStart);
  if (parseRecord(tail.toString('utf8')) !== undefined) {
    await writeAll(file, Buffer.from('\n'));
  } else {
    await file.truncate(tailStart);
  }
  await file.sync();
}

/** The offset just past the last newline before `size` (0 when there is none). */
async function lastNewlineEnd(file: FileHandle, size: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024);
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - chunk.length);
    const { bytesRead } = await file.read(chunk, 0, end - start, start);
    const at = chunk.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (at >= 0) return start + at + 1;
    end = start;
  }
  return 0;
}
