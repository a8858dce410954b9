/**
 * A tokenizer pool's worker thread (lib/data/tokenizer-pool.ts): loads the tokenizer of the folder
 * it is given, then encodes each batch of texts it receives with Tokenizer.encode, the same code
 * the calling thread would run, and replies with the ids of all of them in one buffer (moved, not
 * copied) and where each text's ids end.
 *
 *   in:  { id, texts: string[] }
 *   out: { id, ids: Int32Array, ends: Uint32Array }  (text k's ids are ids[ends[k−1], ends[k]))
 *        { id, error: string }                       (a text that could not be encoded)
 */
import { parentPort, workerData } from 'node:worker_threads';

import { Tokenizer } from '../lm/tokenizer.js';

const port = parentPort!;
const tokenizer = await Tokenizer.load((workerData as { dir: string }).dir);

port.on('message', ({ id, texts }: { id: number; texts: string[] }) => {
  try {
    const parts = texts.map((text) => tokenizer.encode(text));
    const ends = new Uint32Array(parts.length);
    let total = 0;
    parts.forEach((part, k) => (ends[k] = total += part.length));
    const ids = new Int32Array(total);
    parts.forEach((part, k) => ids.set(part, k === 0 ? 0 : ends[k - 1]!));
    port.postMessage({ id, ids, ends }, [ids.buffer, ends.buffer]);
  } catch (error) {
    port.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
