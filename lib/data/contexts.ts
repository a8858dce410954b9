/**
 * Fixed-length token contexts from a text corpus, by document packing: the input side of the
 * activation pipeline. Seeded, and resumable exactly from a saved position.
 *
 * The stream is a pure function of (corpus files, seed, options), so a position is enough to
 * resume it:
 * 1. The corpus's documents (lib/data/corpus.ts, file order) are grouped into windows of
 *    `shuffleDocuments` consecutive documents; window w is served in a Fisher–Yates order drawn
 *    from Rng(mixSeed([DOCUMENT_ORDER, seed, w])) (1 = file order, no shuffle).
 * 2. Each document is tokenised on its own (no special tokens added). Its unit is its tokens,
 *    preceded by the EOS token when `separateDocuments` and it is not the first document.
 * 3. The units are concatenated and cut into contexts: with `prependBos`, the BOS token then
 *    contextLength − 1 stream tokens; without, contextLength stream tokens. A separator that
 *    would come right after a context's BOS is dropped (the BOS already marks a fresh start;
 *    for GPT-2, BOS and EOS are the same token).
 * 4. One pass: at the end of the corpus the tokens that do not fill a whole context (fewer than
 *    contextLength − 1, or contextLength without BOS) are dropped, nothing else is.
 * A position is (documentsConsumed, tokenOffset): documents whose units were used up, and tokens
 * of the next document's unit already served. Restoring re-reads the corpus from its start,
 * passing over the first documentsConsumed documents without tokenising them, and tokenises only
 * the document it resumes inside.
 *
 * Tokenisation runs on worker threads by default (lib/data/document-tokens.ts), a few batches of
 * documents ahead of the one being packed; the stream is the same as when the calling thread
 * encodes each document itself (tokenizerThreads 0).
 *
 * Memory: one window of documents' text (shuffleDocuments × the document size, each document at
 * most maxDocumentChars characters), and the tokens of one document, or of the batches ahead.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';

import { Rng } from '../random.js';
import type { Tokenizer } from '../lm/tokenizer.js';
import { type DocumentTokens, documentTokens, tokenizerThreads } from './document-tokens.js';
import { SEED_PURPOSE, mixSeed, nonNegativeInteger, permutation, positiveInteger } from './stream-common.js';
import { corpusOptionsWithDefaults, readCorpusFiles, resolveCorpusFiles, type CorpusOptions, type CorpusReport } from './corpus.js';

export interface ContextStreamOptions {
  tokenizer: Tokenizer;
  /** Tokens per context, BOS included. */
  contextLength: number;
  seed: number;
  /**
   * Begin every context with the BOS token (TransformerLens's default for SAE training). Default:
   * true when the tokenizer has a BOS token (or else an EOS token, used in its place).
   */
  prependBos?: boolean;
  /**
   * Put the EOS token (or else the BOS token) between packed documents. Default: true when the
   * tokenizer has one.
   */
  separateDocuments?: boolean;
  /** Shuffle documents within windows of this many (seeded); 1 = file order. Default 1024. */
  shuffleDocuments?: number;
  /**
   * Worker threads that encode the documents ahead (lib/data/tokenizer-pool.ts); 0 encodes each
   * on the calling thread when it is reached. The same tokens either way. Default: one per core
   * but one, at most 8 (0 for a tokenizer not loaded from a file).
   */
  tokenizerThreads?: number;
  /** Resume exactly from a position saved by `state()`. */
  state?: ContextStreamState;
}

export interface ContextStreamState {
  version: 1;
  seed: number;
  /** Documents (in stream order) whose tokens were used up. */
  documentsConsumed: number;
  /** Tokens of the next document's unit (its separator included) already served. */
  tokenOffset: number;
  /** Contexts served since the start of the stream. */
  contextsServed: number;
  /** Summary of the files, their sizes, the tokenizer and the options the position refers to. */
  fingerprint: string;
}

export interface ContextStream {
  readonly contextLength: number;
  /**
   * The next `count` contexts as one [rows, contextLength] row-major array. rows is `count`
   * until the corpus runs out; the last batch may hold fewer rows (rows = length / contextLength);
   * after it, null.
   */
  next(count: number): Promise<Int32Array | null>;
  state(): ContextStreamState;
  /** What the corpus reader has read in this process so far (a restored stream re-reads the passed-over documents). */
  readonly report: CorpusReport;
  /** Stops reading the corpus (closes the open file); next() then returns null. Done by itself at the end. */
  close(): Promise<void>;
}

/** A saved position that does not belong to this corpus, tokenizer and options. */
export class ContextStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContextStreamError';
  }
}

export const CONTEXT_DEFAULTS = { shuffleDocuments: 1024 } as const;

/** The options that shape the stream, in the readable part of the fingerprint. */
interface StreamShape {
  files: number;
  bytes: number;
  contextLength: number;
  prependBos: boolean;
  separateDocuments: boolean;
  shuffleDocuments: number;
  maxDocumentChars: number;
  /** File names and sizes, textField, the tokenizer file and its special tokens. */
  hash: string;
}

function fingerprintString(shape: StreamShape): string {
  return [
    `${shape.files}f`,
    `${shape.bytes}B`,
    `ctx${shape.contextLength}`,
    `bos${shape.prependBos ? 1 : 0}`,
    `sep${shape.separateDocuments ? 1 : 0}`,
    `shuf${shape.shuffleDocuments}`,
    `max${shape.maxDocumentChars}`,
    shape.hash,
  ].join('-');
}

const SHAPE_LABELS = ['files', 'bytes', 'contextLength', 'prependBos', 'separateDocuments', 'shuffleDocuments', 'maxDocumentChars', 'file names, textField or tokenizer'];

/** What differs between two fingerprints, in words. */
function describeDifference(saved: string, current: string): string {
  const savedParts = saved.split('-');
  const currentParts = current.split('-');
  if (savedParts.length !== currentParts.length) return `saved fingerprint "${saved}", now "${current}"`;
  const differences = SHAPE_LABELS.flatMap((label, i) =>
    savedParts[i] === currentParts[i] ? [] : [`${label} (saved ${savedParts[i] ?? '?'}, now ${currentParts[i] ?? '?'})`],
  );
  return differences.length === 0 ? `saved fingerprint "${saved}", now "${current}"` : differences.join('; ');
}

/** Documents in stream order: the corpus read in windows, each window served in its seeded order. */
class ShuffledDocuments {
  readonly #documents: AsyncIterator<{ text: string }>;
  readonly #seed: number;
  readonly #windowSize: number;
  #window = -1;
  #texts: string[] = [];
  #order: Uint32Array = new Uint32Array(0);
  #served = 0;
  #exhausted = false;

  constructor(documents: AsyncIterator<{ text: string }>, seed: number, windowSize: number) {
    this.#documents = documents;
    this.#seed = seed;
    this.#windowSize = windowSize;
  }

  async #read(keep: boolean): Promise<string[]> {
    const texts: string[] = [];
    while (!this.#exhausted && texts.length < this.#windowSize) {
      const result = await this.#documents.next();
      if (result.done === true) this.#exhausted = true;
      else texts.push(keep ? result.value.text : '');
    }
    return texts;
  }

  async #loadWindow(): Promise<void> {
    this.#window++;
    this.#texts = await this.#read(true);
    this.#order =
      this.#windowSize === 1
        ? Uint32Array.of(0).subarray(0, this.#texts.length)
        : permutation(this.#texts.length, new Rng(mixSeed([SEED_PURPOSE.DOCUMENT_ORDER, this.#seed, this.#window])));
    this.#served = 0;
  }

  /** Passes over the first `count` documents without keeping the text of whole windows before them; false if there are fewer. */
  async skip(count: number): Promise<boolean> {
    const window = Math.floor(count / this.#windowSize);
    while (this.#window + 1 < window) {
      const passed = await this.#read(false);
      this.#window++;
      if (passed.length < this.#windowSize) return false;
    }
    await this.#loadWindow();
    const within = count - window * this.#windowSize;
    if (within > this.#texts.length) return false;
    for (let i = 0; i < within; i++) this.#texts[this.#order[i]!] = '';
    this.#served = within;
    return true;
  }

  /** The next document's text, or null at the end of the corpus. */
  async next(): Promise<string | null> {
    if (this.#window < 0 || this.#served === this.#texts.length) {
      if (this.#exhausted && this.#window >= 0) return null;
      await this.#loadWindow();
      if (this.#texts.length === 0) return null;
    }
    const slot = this.#order[this.#served++]!;
    const text = this.#texts[slot]!;
    this.#texts[slot] = ''; // served: let the text go
    return text;
  }

  async close(): Promise<void> {
    await this.#documents.return?.();
  }
}

class PackedContextStream implements ContextStream {
  readonly contextLength: number;
  readonly report: CorpusReport;
  readonly #documents: DocumentTokens;
  readonly #seed: number;
  readonly #fingerprint: string;
  /** BOS id when contexts begin with one, else null. */
  readonly #bos: number | null;
  /** Separator id between documents, else null. */
  readonly #separator: number | null;

  /** Index (in stream order) of the next document to tokenise. */
  #nextDocument = 0;
  /** The unit of document #nextDocument − 1 and the tokens of it served; null before the first. */
  #unit: Int32Array | null = null;
  #unitHasSeparator = false;
  #offset = 0;
  #contextsServed = 0;
  #ended = false;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    documents: DocumentTokens,
    report: CorpusReport,
    settings: { contextLength: number; seed: number; fingerprint: string; bos: number | null; separator: number | null },
  ) {
    this.#documents = documents;
    this.report = report;
    this.contextLength = settings.contextLength;
    this.#seed = settings.seed;
    this.#fingerprint = settings.fingerprint;
    this.#bos = settings.bos;
    this.#separator = settings.separator;
  }

  /** The next document's tokens into #unit; false at the end of the corpus. */
  async #loadDocument(): Promise<boolean> {
    const tokens = await this.#documents.next();
    if (tokens === null) {
      this.#unit = null;
      this.#offset = 0;
      return false;
    }
    this.#unitHasSeparator = this.#separator !== null && this.#nextDocument > 0;
    if (this.#unitHasSeparator) {
      const unit = new Int32Array(tokens.length + 1);
      unit[0] = this.#separator!;
      unit.set(tokens, 1);
      this.#unit = unit;
    } else {
      this.#unit = tokens;
    }
    this.#offset = 0;
    this.#nextDocument++;
    return true;
  }

  /** Moves to the position of a saved state (the caller has checked it). */
  async restore(documentsConsumed: number, tokenOffset: number, contextsServed: number): Promise<void> {
    if (!(await this.#documents.skip(documentsConsumed))) {
      throw new ContextStreamError(`state.documentsConsumed ${documentsConsumed} is past the end of the corpus (${this.report.documents} documents)`);
    }
    this.#nextDocument = documentsConsumed;
    this.#contextsServed = contextsServed;
    if (tokenOffset === 0) return;
    if (!(await this.#loadDocument())) {
      throw new ContextStreamError(`state.tokenOffset ${tokenOffset} points into document ${documentsConsumed}, past the end of the corpus`);
    }
    if (tokenOffset > this.#unit!.length) {
      throw new ContextStreamError(`state.tokenOffset ${tokenOffset} is past the end of document ${documentsConsumed} (${this.#unit!.length} tokens)`);
    }
    this.#offset = tokenOffset;
  }

  /** Writes one context at out[start, start + contextLength); false (the row unfinished) at the end of the corpus. */
  async #fillContext(out: Int32Array, start: number): Promise<boolean> {
    const end = start + this.contextLength;
    let position = start;
    if (this.#bos !== null) out[position++] = this.#bos;
    const firstText = position;
    while (position < end) {
      if (this.#unit === null || this.#offset >= this.#unit.length) {
        if (!(await this.#loadDocument())) return false;
        continue;
      }
      if (position === firstText && this.#bos !== null && this.#offset === 0 && this.#unitHasSeparator) {
        this.#offset = 1; // no separator straight after BOS
        continue;
      }
      const take = Math.min(end - position, this.#unit.length - this.#offset);
      out.set(this.#unit.subarray(this.#offset, this.#offset + take), position);
      position += take;
      this.#offset += take;
    }
    return true;
  }

  async #serve(count: number): Promise<Int32Array | null> {
    if (this.#ended) return null;
    const out = new Int32Array(count * this.contextLength);
    let rows = 0;
    while (rows < count) {
      if (!(await this.#fillContext(out, rows * this.contextLength))) {
        this.#ended = true;
        await this.#documents.close();
        break;
      }
      rows++;
      this.#contextsServed++;
    }
    if (rows === 0) return null;
    return rows === count ? out : out.slice(0, rows * this.contextLength);
  }

  next(count: number): Promise<Int32Array | null> {
    positiveInteger('count', count);
    const result = this.#queue.then(() => this.#serve(count));
    this.#queue = result.catch(() => undefined);
    return result;
  }

  close(): Promise<void> {
    const closing = this.#queue.then(async () => {
      if (this.#ended) return;
      this.#ended = true;
      await this.#documents.close();
    });
    this.#queue = closing.catch(() => undefined);
    return closing;
  }

  state(): ContextStreamState {
    const inside = this.#unit !== null && this.#offset < this.#unit.length;
    return {
      version: 1,
      seed: this.#seed,
      documentsConsumed: inside ? this.#nextDocument - 1 : this.#nextDocument,
      tokenOffset: inside ? this.#offset : 0,
      contextsServed: this.#contextsServed,
      fingerprint: this.#fingerprint,
    };
  }
}

/** Special tokens to use, checked against the tokenizer. */
function specialTokens(options: ContextStreamOptions): { bos: number | null; separator: number | null } {
  const { tokenizer } = options;
  const begin = tokenizer.bosTokenId ?? tokenizer.eosTokenId;
  const end = tokenizer.eosTokenId ?? tokenizer.bosTokenId;
  const prependBos = options.prependBos ?? begin !== null;
  const separateDocuments = options.separateDocuments ?? end !== null;
  if (typeof prependBos !== 'boolean') throw new TypeError(`prependBos must be a boolean (got ${String(prependBos)})`);
  if (typeof separateDocuments !== 'boolean') throw new TypeError(`separateDocuments must be a boolean (got ${String(separateDocuments)})`);
  if (prependBos && begin === null) throw new RangeError(`prependBos: the tokenizer ${tokenizer.path} has no BOS or EOS token`);
  if (separateDocuments && end === null) throw new RangeError(`separateDocuments: the tokenizer ${tokenizer.path} has no EOS or BOS token`);
  return { bos: prependBos ? begin : null, separator: separateDocuments ? end : null };
}

/**
 * Opens the context stream over `corpus`. Throws CorpusError when the corpus cannot be read at
 * all, ContextStreamError when `options.state` was saved for another corpus, tokenizer or options.
 */
export async function openContextStream(corpus: CorpusOptions, options: ContextStreamOptions): Promise<ContextStream> {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const { tokenizer, seed, state } = options;
  if (typeof tokenizer !== 'object' || tokenizer === null || typeof tokenizer.encode !== 'function') {
    throw new TypeError('tokenizer must be a Tokenizer (Tokenizer.load(dir))');
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer (got ${String(seed)})`);
  const contextLength = positiveInteger('contextLength', options.contextLength);
  const threads = tokenizerThreads(tokenizer, options.tokenizerThreads, 'tokenizerThreads');
  const shuffleDocuments = positiveInteger('shuffleDocuments', options.shuffleDocuments ?? CONTEXT_DEFAULTS.shuffleDocuments);
  const { bos, separator } = specialTokens(options);
  if (bos !== null && contextLength < 2) throw new RangeError(`contextLength must be at least 2 with prependBos (got ${contextLength})`);
  const corpusOptions = corpusOptionsWithDefaults(corpus);

  const files = await resolveCorpusFiles(corpusOptions);
  const sizes = await Promise.all(files.map(async (path) => (await stat(path).catch(() => undefined))?.size ?? -1));
  const tokenizerBytes = await readFile(tokenizer.path).catch(() => Buffer.from(tokenizer.path));
  const hash = createHash('sha256')
    .update(JSON.stringify([files.map((path, i) => [basename(path), sizes[i]]), corpusOptions.textField, bos, separator, tokenizer.vocabSize]))
    .update(tokenizerBytes)
    .digest('hex')
    .slice(0, 16);
  const fingerprint = fingerprintString({
    files: files.length,
    bytes: sizes.reduce((sum, size) => sum + Math.max(size, 0), 0),
    contextLength,
    prependBos: bos !== null,
    separateDocuments: separator !== null,
    shuffleDocuments,
    maxDocumentChars: corpusOptions.maxDocumentChars,
    hash,
  });

  if (state !== undefined) {
    if (typeof state !== 'object' || state === null) throw new TypeError('state must be an object saved by state()');
    if (state.version !== 1) throw new RangeError(`state.version must be 1 (got ${String(state.version)})`);
    if (state.seed !== seed) throw new RangeError(`state.seed ${String(state.seed)} differs from the seed option ${seed}; a state resumes only its own stream`);
    if (state.fingerprint !== fingerprint) {
      throw new ContextStreamError(
        `the corpus or options changed since this state was saved: ${describeDifference(String(state.fingerprint), fingerprint)}`,
      );
    }
    nonNegativeInteger('state.documentsConsumed', state.documentsConsumed);
    nonNegativeInteger('state.tokenOffset', state.tokenOffset);
    nonNegativeInteger('state.contextsServed', state.contextsServed);
  }

  const report: CorpusReport = { files: 0, documents: 0, skipped: [] };
  const texts = new ShuffledDocuments(readCorpusFiles(files, corpusOptions, report), seed, shuffleDocuments);
  const documents = documentTokens(texts, tokenizer, threads);
  const stream = new PackedContextStream(documents, report, { contextLength, seed, fingerprint, bos, separator });
  if (state !== undefined) {
    try {
      await stream.restore(state.documentsConsumed, state.tokenOffset, state.contextsServed);
    } catch (error) {
      await documents.close();
      throw error;
    }
  }
  return stream;
}
