/**
 * Contexts from either kind of corpus: token shards (paths ending in .tokens, or folders and globs
 * holding only such files: lib/data/shard-contexts.ts) or text, JSONL and Parquet files, folders and
 * globs tokenised on the fly (lib/data/contexts.ts). Both resume from their own saved state.
 *
 * What a text corpus skips (unreadable files, bad lines and rows: lib/data/corpus.ts) is passed to
 * `onSkip` as it is found, and a corpus that yields no whole context says why, naming what it read
 * and skipped, instead of ending silently.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';

import { glob, isDynamicPattern } from 'tinyglobby';

import { isTempFileName } from '../io/atomic.js';
import type { Tokenizer } from '../lm/tokenizer.js';
import { ContextStreamError, openContextStream, type ContextStreamState } from './contexts.js';
import { type CorpusReport, reportVerb } from './corpus.js';
import type { ContextSource } from './lm-activations.js';
import { openShardContextStream, type ShardContextState } from './shard-contexts.js';

export type CorpusKind = 'shards' | 'text';

const isShardFile = (p: string) => p.toLowerCase().endsWith('.tokens');

/** Which kind `paths` are, by their names (folders and globs count as text); a mix is an error naming `field`. */
export function corpusKind(paths: readonly string[], field = 'paths'): CorpusKind {
  const shards = paths.filter(isShardFile).length;
  if (shards === paths.length) return 'shards';
  if (shards > 0) throw new ContextStreamError(`${field}: mixes token shards (.tokens) and text; give one kind`);
  return 'text';
}

/**
 * The kind of corpus `paths` hold, looking inside folders and globs: token shards when every path
 * is a .tokens file, or a folder or glob whose files are all .tokens files (then `paths` lists
 * those files, each folder's and glob's sorted); otherwise text, with `paths` as given (the text
 * reader walks them). A mix is an error naming `field`.
 */
export async function resolveCorpusPaths(paths: readonly string[], field = 'paths'): Promise<{ kind: CorpusKind; paths: string[] }> {
  const expanded: { shards: string[] | null }[] = [];
  for (const p of paths) {
    let files: string[] | null = null;  // the files of a glob or folder
    // A path that exists is taken as it is, even with glob characters in its name ("data (copy)", "run[1].tokens").
    const found = await stat(p).catch(() => null);
    if (found?.isDirectory()) files = await glob('**/*', { cwd: p, absolute: true, onlyFiles: true, dot: false });
    else if (!found && isDynamicPattern(p)) files = await glob(p, { absolute: true, onlyFiles: true, expandDirectories: false, dot: false });
    // An atomic write's temporary file (of a tokenize run that was killed) is no part of the corpus.
    if (files !== null) files = files.filter((f) => !isTempFileName(path.basename(f)));
    if (files === null) expanded.push({ shards: isShardFile(p) ? [p] : null });
    else {
      const shards = files.filter(isShardFile);
      const other = files.find((f) => !isShardFile(f));
      if (shards.length > 0 && other !== undefined) throw new ContextStreamError(`${field}: ${p} mixes token shards (.tokens) and other files (${other}); give one kind`);
      expanded.push({ shards: shards.length > 0 ? shards.sort() : null });
    }
  }
  const shardEntries = expanded.filter((e) => e.shards !== null).length;
  if (shardEntries === 0) return { kind: 'text', paths: [...paths] };
  if (shardEntries < expanded.length) throw new ContextStreamError(`${field}: mixes token shards (.tokens) and text; give one kind`);
  return { kind: 'shards', paths: expanded.flatMap((e) => e.shards!) };
}

export interface CorpusContextOptions {
  paths: string[];
  /** JSONL field / Parquet column of the text (text corpora). */
  textField?: string;
  tokenizer: Tokenizer;
  contextLength: number;
  seed: number;
  /** Passes over token shards (default 1; text streams end after one pass). */
  epochs?: number;
  /** Text corpora: worker threads that tokenise ahead (lib/data/contexts.ts; default: per core, 0: none). */
  tokenizerThreads?: number;
  /** Token shards: read each whole on opening, checking its checksum and that every token is in its vocabulary. */
  verify?: boolean;
  /** Text corpora: called once for each file and kind of problem the reader skips or repairs, as it is found. */
  onSkip?: (skipped: { file: string; reason: string }) => void;
  state?: unknown;
}

export type CorpusContextSource = ContextSource & {
  readonly kind: CorpusKind;
  /** Contexts per pass (token shards only). */
  readonly contextsPerEpoch: number | null;
  /** What the text reader has read and skipped in this pass (text corpora; null for token shards). */
  readonly report: CorpusReport | null;
};

/**
 * An onSkip that writes `skipped FILE: REASON` (`repaired` for invalid UTF-8, whose documents are
 * kept with replacement characters) once per file and reason over every pass of a run
 * (each pass reopens the stream and meets the same problems again), and keeps what it wrote.
 */
export function skipLog(write: (line: string) => void): { onSkip: (skipped: { file: string; reason: string }) => void; skipped: () => { file: string; reason: string }[] } {
  const seen = new Map<string, { file: string; reason: string }>();
  return {
    onSkip: ({ file, reason }) => {
      const key = `${file}\0${reason}`;
      if (seen.has(key)) return;
      seen.set(key, { file, reason });
      write(`${reportVerb(reason)} ${file}: ${reason}`);
    },
    skipped: () => [...seen.values()],
  };
}

/** Why a text corpus gave no context: what was read, and the first things skipped. */
function emptyCorpusMessage(paths: readonly string[], contextLength: number, report: CorpusReport): string {
  const plural = (n: number, what: string) => `${n.toLocaleString('en-US')} ${what}${n === 1 ? '' : 's'}`;
  const shown = report.skipped.slice(0, 5).map((s) => `${s.file}: ${s.reason} (${s.count})`);
  if (report.skipped.length > shown.length) shown.push(`${report.skipped.length - shown.length} more`);
  const skipped = shown.length > 0 ? `; skipped ${shown.join('; ')}` : '';
  return `${paths.join(', ')}: no whole context of ${contextLength} tokens (${plural(report.files, 'file')} and ${plural(report.documents, 'document')} read${skipped})`;
}

export async function openCorpusContexts(o: CorpusContextOptions): Promise<CorpusContextSource> {
  const corpus = await resolveCorpusPaths(o.paths);
  if (corpus.kind === 'shards') {
    const stream = await openShardContextStream({
      paths: corpus.paths,
      contextLength: o.contextLength,
      seed: o.seed,
      bosTokenId: o.tokenizer.bosTokenId,
      eosTokenId: o.tokenizer.eosTokenId,
      ...(o.epochs !== undefined ? { epochs: o.epochs } : {}),
      ...(o.verify ? { verify: true } : {}),
      ...(o.state ? { state: o.state as ShardContextState } : {}),
    });
    if (stream.vocabSize > o.tokenizer.vocabSize) {
      await stream.close();
      throw new ContextStreamError(`the token shards' vocabulary (${stream.vocabSize} ids) is larger than the tokenizer's (${o.tokenizer.vocabSize}): they come from another tokenizer`);
    }
    return { kind: 'shards', contextsPerEpoch: stream.contextsPerEpoch, report: null, next: (n) => stream.next(n), state: () => stream.state(), close: () => stream.close() };
  }
  const stream = await openContextStream(
    { paths: o.paths, ...(o.textField ? { textField: o.textField } : {}) },
    {
      tokenizer: o.tokenizer,
      contextLength: o.contextLength,
      seed: o.seed,
      ...(o.tokenizerThreads !== undefined ? { tokenizerThreads: o.tokenizerThreads } : {}),
      ...(o.state ? { state: o.state as ContextStreamState } : {}),
    },
  );
  const report = stream.report;
  let noted = 0; // report.skipped entries passed to onSkip
  const noteSkips = () => {
    for (; noted < report.skipped.length; noted++) o.onSkip?.({ file: report.skipped[noted]!.file, reason: report.skipped[noted]!.reason });
  };
  // From the start of a pass (not from a saved position), an end before the first context means the
  // corpus holds none.
  let served = o.state ? -1 : 0;
  return {
    kind: 'text',
    contextsPerEpoch: null,
    report,
    next: async (n) => {
      const ids = await stream.next(n);
      noteSkips();
      if ((ids === null || ids.length === 0) && served === 0) throw new ContextStreamError(emptyCorpusMessage(o.paths, o.contextLength, report));
      if (ids !== null && served >= 0) served += ids.length;
      return ids;
    },
    state: () => stream.state(),
    close: async () => {
      await stream.close();
      noteSkips();
    },
  };
}

/**
 * The first `count` contexts of a corpus (fewer if it holds fewer), as [rows, contextLength]. Token
 * shards are verified (checksum, vocabulary) unless `verify: false`.
 */
export async function readContexts(o: CorpusContextOptions, count: number): Promise<Int32Array> {
  const source = await openCorpusContexts({ ...o, verify: o.verify ?? true, epochs: 1 });
  try {
    const chunks: Int32Array[] = [];
    let rows = 0;
    while (rows < count) {
      const got = await source.next(Math.min(256, count - rows));
      if (!got || got.length === 0) break;
      chunks.push(got);
      rows += got.length / o.contextLength;
    }
    if (rows === 0) throw new ContextStreamError(`${o.paths.join(', ')}: no whole context of ${o.contextLength} tokens`);
    const out = new Int32Array(rows * o.contextLength);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  } finally {
    await source.close?.();
  }
}
