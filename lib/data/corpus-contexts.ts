/**
 * Contexts from either kind of corpus: token shards (paths ending in .tokens,
 * lib/data/shard-contexts.ts) or text, JSONL and Parquet files, folders and globs tokenised on the
 * fly (lib/data/contexts.ts). Both resume from their own saved state.
 */
import type { Tokenizer } from '../lm/tokenizer.js';
import { ContextStreamError, openContextStream, type ContextStreamState } from './contexts.js';
import type { ContextSource } from './lm-activations.js';
import { openShardContextStream, type ShardContextState } from './shard-contexts.js';

export type CorpusKind = 'shards' | 'text';

/** Which kind `paths` are; a mix is an error naming `field`. */
export function corpusKind(paths: readonly string[], field = 'paths'): CorpusKind {
  const shards = paths.filter((p) => p.endsWith('.tokens')).length;
  if (shards === paths.length) return 'shards';
  if (shards > 0) throw new ContextStreamError(`${field}: mixes token shards (.tokens) and text; give one kind`);
  return 'text';
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
  state?: unknown;
}

export type CorpusContextSource = ContextSource & { readonly kind: CorpusKind; /** Contexts per pass (token shards only). */ readonly contextsPerEpoch: number | null };

export async function openCorpusContexts(o: CorpusContextOptions): Promise<CorpusContextSource> {
  if (corpusKind(o.paths) === 'shards') {
    const stream = await openShardContextStream({
      paths: o.paths,
      contextLength: o.contextLength,
      seed: o.seed,
      bosTokenId: o.tokenizer.bosTokenId,
      eosTokenId: o.tokenizer.eosTokenId,
      ...(o.epochs !== undefined ? { epochs: o.epochs } : {}),
      ...(o.state ? { state: o.state as ShardContextState } : {}),
    });
    if (stream.vocabSize > o.tokenizer.vocabSize) {
      await stream.close();
      throw new ContextStreamError(`the token shards' vocabulary (${stream.vocabSize} ids) is larger than the tokenizer's (${o.tokenizer.vocabSize}): they come from another tokenizer`);
    }
    return { kind: 'shards', contextsPerEpoch: stream.contextsPerEpoch, next: (n) => stream.next(n), state: () => stream.state(), close: () => stream.close() };
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
  return { kind: 'text', contextsPerEpoch: null, next: (n) => stream.next(n), state: () => stream.state(), close: () => stream.close() };
}

/** The first `count` contexts of a corpus (fewer if it holds fewer), as [rows, contextLength]. */
export async function readContexts(o: CorpusContextOptions, count: number): Promise<Int32Array> {
  const source = await openCorpusContexts({ ...o, epochs: 1 });
  try {
    const chunks: Int32Array[] = [];
    let rows = 0;
    while (rows < count) {
      const got = await source.next(Math.min(256, count - rows));
      if (!got || got.length === 0) break;
      chunks.push(got);
      rows += got.length / o.contextLength;
    }
    if (rows === 0) throw new ContextStreamError(`${o.paths.join(', ')} holds no whole context of ${o.contextLength} tokens`);
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
