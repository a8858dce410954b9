/**
 * `monosemantic tokenize`: tokenises a text corpus into one token shard (lib/data/token-shards.ts)
 * for training from token ids: documents in corpus order (lib/data/corpus.ts), each encoded without
 * special tokens added, the tokenizer's EOS token between consecutive documents. Text that spells a
 * special token (e.g. "<|endoftext|>") is encoded as that token, as HF tokenizers do by default.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';

import type { Command } from 'commander';

import { CorpusError, readCorpus, reportVerb, type CorpusReport } from '../data/corpus.js';
import { documentTokens, tokenizerThreads, type DocumentTexts } from '../data/document-tokens.js';
import { writeTokenShard, type TokenShardInfo } from '../data/token-shards.js';
import { removeAbandonedTempFiles } from '../io/atomic.js';
import { TOKENIZER_FILE, Tokenizer } from '../lm/tokenizer.js';
import { nonNegativeIntegerFlag, positiveIntegerFlag, prepareOutputFile } from './flags.js';

interface TokenizeFlags {
  tokenizer: string;
  corpus: string[];
  out: string;
  maxTokens?: string;
  textField: string;
  threads?: string;
}

export interface TokenizeOptions {
  /** A tokenizer.json, or a folder holding one. */
  tokenizer: string;
  /** Corpus files, folders or globs (lib/data/corpus.ts). */
  corpus: string[];
  out: string;
  /** Stop before the first document that would take the shard past this many tokens (separators counted). */
  maxTokens?: number;
  textField?: string;
  /** Worker threads that encode the documents ahead (default: one per core but one, at most 8; 0: this thread). */
  threads?: number;
  /** Called now and then with the documents and tokens so far. */
  onProgress?: (documents: number, tokens: number) => void;
  /** The corpus reader's piece size (lib/data/corpus.ts); a document's pieces are joined without EOS. */
  maxDocumentChars?: number;
}

export interface TokenizeResult {
  shard: TokenShardInfo;
  /** Documents whose tokens are in the shard. */
  documents: number;
  /** Whether --max-tokens stopped it before the end of the corpus. */
  truncated: boolean;
  report: CorpusReport;
}

/** The folder Tokenizer.load reads, from a folder or a path to its tokenizer.json. */
async function tokenizerFolder(given: string): Promise<string> {
  const info = await stat(given).catch(() => undefined);
  if (info?.isFile() !== true) return given; // a folder, or missing: Tokenizer.load says why
  if (path.basename(given) !== TOKENIZER_FILE) {
    throw new RangeError(`--tokenizer ${given}: a tokenizer file must be named ${TOKENIZER_FILE} (or pass its folder)`);
  }
  return path.dirname(given);
}

/** Token ids in a growing typed array of the shard's width. */
class TokenBuffer {
  #tokens: Uint16Array | Uint32Array;
  length = 0;

  constructor(vocabSize: number) {
    this.#tokens = vocabSize <= 0x10000 ? new Uint16Array(1 << 20) : new Uint32Array(1 << 20);
  }

  push(ids: Int32Array): void {
    if (this.length + ids.length > this.#tokens.length) {
      const grown = new (this.#tokens.constructor as Uint16ArrayConstructor | Uint32ArrayConstructor)(Math.max(this.#tokens.length * 2, this.length + ids.length));
      grown.set(this.#tokens.subarray(0, this.length));
      this.#tokens = grown;
    }
    this.#tokens.set(ids, this.length);
    this.length += ids.length;
  }

  pushOne(id: number): void {
    this.push(Int32Array.of(id));
  }

  view(): Uint16Array | Uint32Array {
    return this.#tokens.subarray(0, this.length);
  }
}

/** Tokenises the corpus into a token shard at `options.out` (its folder is created first when missing). */
export async function tokenizeCorpus(options: TokenizeOptions): Promise<TokenizeResult> {
  const maxTokens = options.maxTokens ?? Infinity;
  if (maxTokens !== Infinity && (!Number.isSafeInteger(maxTokens) || maxTokens < 1)) {
    throw new RangeError(`maxTokens must be a positive integer (got ${String(maxTokens)})`);
  }
  const tokenizer = await Tokenizer.load(await tokenizerFolder(options.tokenizer));
  const separator = tokenizer.eosTokenId;
  if (separator === null) throw new RangeError(`the tokenizer ${tokenizer.path} has no EOS token to put between documents`);
  const threads = tokenizerThreads(tokenizer, options.threads, 'threads');
  // Before the tokenising, which can take minutes: the folder is created (as `run -o` and
  // `harvest -o` create theirs), or the output refused in one line.
  await prepareOutputFile('--out', options.out);
  // A run killed while writing left its temporary file (as large as the shard) beside the output.
  await removeAbandonedTempFiles(path.dirname(path.resolve(options.out)), (target) => target === path.basename(options.out));
  const report: CorpusReport = { files: 0, documents: 0, skipped: [] };
  const corpus = readCorpus({ paths: options.corpus, textField: options.textField ?? 'text', ...(options.maxDocumentChars !== undefined ? { maxDocumentChars: options.maxDocumentChars } : {}) }, report);
  // Whether each text handed to the tokenizer continues the one before (a piece of a document cut
  // at the corpus reader's maxDocumentChars): no EOS goes between the two. In order, as the token
  // stream gives the texts back.
  const continues: boolean[] = [];
  const texts: DocumentTexts = {
    next: async () => {
      const result = await corpus.next();
      if (result.done === true) return null;
      continues.push(result.value.continued);
      return result.value.text;
    },
    skip: () => Promise.reject(new Error('not used')),
    close: async () => void (await corpus.return?.(undefined)),
  };
  const stream = documentTokens(texts, tokenizer, threads);
  const tokens = new TokenBuffer(tokenizer.vocabSize);
  let documents = 0;
  let truncated = false;
  let documentStart = 0; // the buffer's length before the current document (and its separator)
  try {
    for (let ids = await stream.next(); ids !== null; ids = await stream.next()) {
      const continued = continues.shift()!;
      const separated = tokens.length > 0 && !continued;
      const needed = ids.length + (separated ? 1 : 0);
      if (tokens.length + needed > maxTokens) {
        truncated = true;
        if (continued) {
          // Whole documents only: the pieces of this one already kept go too.
          tokens.length = documentStart;
          documents--;
        }
        break;
      }
      if (!continued) documentStart = tokens.length;
      if (separated) tokens.pushOne(separator);
      tokens.push(ids);
      if (!continued) documents++;
      if (!continued && documents % 1000 === 0) options.onProgress?.(documents, tokens.length);
    }
  } finally {
    await stream.close();
  }
  if (documents === 0) {
    // An empty shard would only fail later, in whatever reads it: say why here, and write nothing.
    const skipped = report.skipped.slice(0, 3).map((s) => `${reportVerb(s.reason)} ${s.file}: ${s.reason} (${s.count})`);
    const why = truncated ? `its first document alone is longer than --max-tokens ${maxTokens}` : `${report.files} file(s) and ${report.documents} document(s) read${skipped.length ? `; ${skipped.join('; ')}` : ''}`;
    throw new CorpusError(options.corpus.join(', '), `no document to write (${why})`);
  }
  const shard = await writeTokenShard(options.out, tokens.view(), tokenizer.vocabSize);
  return { shard, documents, truncated, report };
}

export function registerTokenize(program: Command): void {
  program
    .command('tokenize')
    .description('tokenise a text corpus into a token shard (EOS between documents)')
    .requiredOption('--tokenizer <path>', 'tokenizer.json, or a folder holding one')
    .requiredOption('--corpus <paths...>', 'text files, folders, JSONL or Parquet files, globs')
    .requiredOption('-o, --out <file>', 'token shard to write')
    .option('--max-tokens <n>', 'stop before the first document that would take the shard past n tokens')
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--threads <n>', 'worker threads that tokenise (0: the main thread; default: one per core but one, at most 8)')
    .action(async (flags: TokenizeFlags) => {
      const started = Date.now();
      const result = await tokenizeCorpus({
        tokenizer: flags.tokenizer,
        corpus: flags.corpus,
        out: flags.out,
        textField: flags.textField,
        ...(flags.threads !== undefined ? { threads: nonNegativeIntegerFlag('--threads', flags.threads) } : {}),
        ...(flags.maxTokens !== undefined ? { maxTokens: positiveIntegerFlag('--max-tokens', flags.maxTokens) } : {}),
        onProgress: (documents, tokens) => {
          if (documents % 20_000 === 0) process.stderr.write(`tokenize: ${documents.toLocaleString('en-US')} documents, ${tokens.toLocaleString('en-US')} tokens\n`);
        },
      });
      for (const skipped of result.report.skipped) process.stderr.write(`tokenize: ${reportVerb(skipped.reason)} ${skipped.file}: ${skipped.reason} (${skipped.count})\n`);
      const { shard } = result;
      process.stdout.write(
        `wrote ${shard.path}: ${shard.tokens.toLocaleString('en-US')} tokens from ${result.documents.toLocaleString('en-US')} documents` +
          `${result.truncated ? ` (stopped at --max-tokens ${flags.maxTokens!})` : ''}, vocabulary ${shard.vocabSize}, ${shard.tokenBytes}-byte tokens, ` +
          `sha256 ${shard.sha256} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
      );
    });
}
