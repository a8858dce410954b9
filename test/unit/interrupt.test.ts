/** SIGINT / SIGTERM around a long run: the run is asked to stop, and the exit status says a signal stopped it. */
import { afterEach, describe, expect, it, vi } from 'vitest';

import { withInterrupts } from '../../lib/cli/interrupt.js';

const exitCodeBefore = process.exitCode;
afterEach(() => {
  process.exitCode = exitCodeBefore;
  vi.restoreAllMocks();
});

/** Calls the handlers added for `name` since `before` was taken, as the signal would (not the test runner's own). */
function deliver(name: 'SIGINT' | 'SIGTERM', before: readonly unknown[]): void {
  for (const listener of process.listeners(name)) if (!before.includes(listener)) listener(name);
}

describe('withInterrupts', () => {
  it('aborts the run on SIGINT and leaves exit status 130 once it returns', async () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const before = process.listeners('SIGINT');
    const result = await withInterrupts(async (signal) => {
      expect(signal.aborted).toBe(false);
      deliver('SIGINT', before);
      expect(signal.aborted).toBe(true);
      expect(process.exitCode).toBe(exitCodeBefore); // not before the run has saved its state and returned
      return 'stopped';
    });
    expect(result).toBe('stopped');
    expect(process.exitCode).toBe(130);
    expect(process.listeners('SIGINT')).toEqual(before);
  });

  it('leaves 143 for SIGTERM; a second signal exits at once with its own status', async () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const exit = vi.spyOn(process, 'exit').mockImplementation(() => {
      throw new Error('process.exit'); // as the real one, it does not return
    });
    const before = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') };
    await withInterrupts(async () => {
      deliver('SIGTERM', before.SIGTERM);
      expect(exit).not.toHaveBeenCalled();
      expect(() => deliver('SIGINT', before.SIGINT)).toThrow('process.exit');
      expect(exit).toHaveBeenCalledWith(130);
    });
    expect(process.exitCode).toBe(143);
  });

  it('says what the run does on the first signal', async () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const before = process.listeners('SIGINT');
    await withInterrupts(async () => deliver('SIGINT', before), 'stopping after the current shard');
    expect(write).toHaveBeenCalledWith('\nSIGINT: stopping after the current shard (press again to quit at once)\n');
  });

  it('leaves the exit status alone for a run no signal stopped, or one that failed', async () => {
    expect(await withInterrupts(async () => 'finished')).toBe('finished');
    expect(process.exitCode).toBe(exitCodeBefore);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const before = process.listeners('SIGINT');
    await expect(
      withInterrupts(async () => {
        deliver('SIGINT', before);
        throw new Error('the checkpoint could not be written');
      }),
    ).rejects.toThrow(/checkpoint/);
    expect(process.exitCode).toBe(exitCodeBefore); // the CLI's error handling sets it
  });
});
