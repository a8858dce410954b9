/**
 * The tokens of a stream's documents, in stream order: the step between reading a text corpus and
 * packing it into contexts (lib/data/contexts.ts). Either each document is encoded on the calling
 * thread when it is reached, or (with a tokenizer pool, lib/data/tokenizer-pool.ts) the documents
 * ahead are read and encoded in batches on worker threads while earlier ones are served. Both
 * give the same tokens in the same order: only where the work is done differs.
 */
import { Tokenizer } from '../lm/tokenizer.js';
import { TokenizerPool, defaultTokenizerThreads } from './tokenizer-pool.js';

/** Document texts in stream order (null at the end). */
export interface DocumentTexts {
  next(): Promise<string | null>;
  /** Passes over the first `count` documents; false if there are fewer. */
  skip(count: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface DocumentTokens {
  /** The next document's ids, or null at the end of the corpus. */
  next(): Promise<Int32Array | null>;
  /** Passes over the first `count` documents without encoding them (before the first next()). */
  skip(count: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * The worker threads to tokenise with: `threads` checked (a non-negative integer; `name` is the
 * option's name in errors), or by default one per core but one, at most 8. Workers load the
 * tokenizer's file and run Tokenizer.encode, so a tokenizer not loaded from a file, or whose encode
 * is replaced, gets 0 (and asking for more is an error).
 */
export function tokenizerThreads(tokenizer: Pick<Tokenizer, 'encode'>, threads: number | undefined, name: string): number {
  const fromFile = tokenizer instanceof Tokenizer && tokenizer.encode === Tokenizer.prototype.encode;
  const resolved = threads ?? (fromFile ? defaultTokenizerThreads() : 0);
  if (!Number.isSafeInteger(resolved) || resolved < 0) throw new RangeError(`${name} must be a non-negative integer (got ${String(resolved)})`);
  if (resolved > 0 && !fromFile) throw new RangeError(`${name}: worker threads need a Tokenizer loaded from a file (Tokenizer.load(dir)) and its own encode`);
  return resolved;
}

/** The documents' tokens: ahead on `threads` workers (tokenizerThreads()), or inline when 0. */
export function documentTokens(texts: DocumentTexts, tokenizer: Pick<Tokenizer, 'encode'>, threads: number): DocumentTokens {
  return threads > 0 ? tokensAhead(texts, TokenizerPool.shared(tokenizer as Tokenizer, threads)) : tokensInline(texts, tokenizer);
}

/** Each document encoded on the calling thread when it is reached. */
export function tokensInline(texts: DocumentTexts, tokenizer: Pick<Tokenizer, 'encode'>): DocumentTokens {
  return {
    next: async () => {
      const text = await texts.next();
      return text === null ? null : tokenizer.encode(text);
    },
    skip: (count) => texts.skip(count),
    close: () => texts.close(),
  };
}

/** A batch of documents sent to the pool together: this many characters, or this many documents. */
const BATCH_CHARS = 1 << 16;
const BATCH_DOCUMENTS = 256;

/**
 * The documents ahead read and encoded on `pool`, `batchesAhead` batches in flight (default two
 * per worker), so the pool's threads work while the caller packs and serves earlier ones.
 */
export function tokensAhead(texts: DocumentTexts, pool: TokenizerPool, batchesAhead = 2 * pool.threads): DocumentTokens {
  return new TokensAhead(texts, pool, batchesAhead);
}

class TokensAhead implements DocumentTokens {
  readonly #texts: DocumentTexts;
  readonly #pool: TokenizerPool;
  readonly #ahead: number;
  /** Batches read (in order) and sent to the pool; an empty batch marks the end. */
  readonly #batches: Promise<Int32Array[]>[] = [];
  /** The reads of the texts, one after another. */
  #reading: Promise<unknown> = Promise.resolve();
  #textsEnded = false;
  #closed = false;
  #current: Int32Array[] = [];
  #at = 0;

  constructor(texts: DocumentTexts, pool: TokenizerPool, batchesAhead: number) {
    if (!Number.isSafeInteger(batchesAhead) || batchesAhead < 1) throw new RangeError(`batchesAhead must be a positive integer (got ${batchesAhead})`);
    this.#texts = texts;
    this.#pool = pool;
    this.#ahead = batchesAhead;
  }

  async next(): Promise<Int32Array | null> {
    for (;;) {
      if (this.#at < this.#current.length) {
        const tokens = this.#current[this.#at]!;
        this.#current[this.#at++] = EMPTY; // served: let it go
        this.#fill();
        return tokens;
      }
      this.#fill();
      const batch = this.#batches.shift();
      if (batch === undefined) return null;
      this.#current = await batch;
      this.#at = 0;
      if (this.#current.length === 0) return null; // the reads reached the end of the corpus
    }
  }

  skip(count: number): Promise<boolean> {
    if (this.#batches.length > 0 || this.#current.length > 0) throw new Error('skip() must come before the first next()');
    return this.#texts.skip(count);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#reading.catch(() => undefined);
    await this.#texts.close();
  }

  /**
   * Keeps `#ahead` batches in flight: each reads its texts after the one before, then goes to the
   * pool. A read that finds the end marks it, so reads queued after it come back empty.
   */
  #fill(): void {
    while (!this.#textsEnded && !this.#closed && this.#batches.length < this.#ahead) {
      const read = this.#reading.then(() => this.#readBatch());
      this.#reading = read.catch(() => undefined);
      const batch = read.then((texts) => this.#pool.encode(texts));
      batch.catch(() => undefined); // a failure is reported when its batch is reached (or never, after close)
      this.#batches.push(batch);
    }
  }

  async #readBatch(): Promise<string[]> {
    const texts: string[] = [];
    let chars = 0;
    while (!this.#closed && !this.#textsEnded && chars < BATCH_CHARS && texts.length < BATCH_DOCUMENTS) {
      const text = await this.#texts.next();
      if (text === null) {
        this.#textsEnded = true;
        break;
      }
      texts.push(text);
      chars += text.length;
    }
    return texts;
  }
}

const EMPTY = new Int32Array(0);
