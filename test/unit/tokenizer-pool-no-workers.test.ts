/**
 * Where worker threads cannot be started at all, the tokenizer pool rejects each batch with a
 * TokenizerPoolError naming the tokenizer file (it does not throw from encode, or hang).
 */
import path from 'node:path';

import { describe, expect, it, vi } from 'vitest';

vi.mock('node:worker_threads', async (original) => ({
  ...(await original<typeof import('node:worker_threads')>()),
  Worker: class {
    constructor() {
      throw new Error('threads are not allowed here');
    }
  },
}));

import { TokenizerPool, TokenizerPoolError } from '../../lib/data/tokenizer-pool.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';

describe('TokenizerPool without worker threads', () => {
  it('rejects each batch with an error naming the tokenizer', async () => {
    const tokenizer = await Tokenizer.load(path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied'));
    const pool = TokenizerPool.shared(tokenizer, 2);
    const batch = pool.encode(['some text']);
    await expect(batch).rejects.toThrow(TokenizerPoolError);
    await expect(batch).rejects.toThrow(/tiny-gelu-new-tied.*cannot start a tokenizer worker \(threads are not allowed here\)/);
    await expect(pool.encode(['again'])).rejects.toThrow(TokenizerPoolError);
  });
});
