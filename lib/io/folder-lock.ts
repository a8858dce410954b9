/**
 * One writer per run folder: a run takes `<folder>/.lock` (created exclusively, holding its
 * process id) for as long as it trains, so a second run or resume of the same folder is refused
 * instead of racing the first over checkpoints and logs. A lock whose process is gone (killed) is
 * taken over. As with the temporary files, "gone" is judged by process id on this machine.
 */
import { mkdir, open, readFile, readdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';

import { processIsAlive } from './atomic.js';

/** The lock file's name in a run folder. */
export const LOCK_FILE = '.lock';

/** A run folder held by another process. */
export class FolderLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`${dir} is in use by another monosemantic process (pid ${pid}): wait for it to finish or stop it (if none is running, delete ${path.join(dir, LOCK_FILE)})`);
    this.name = 'FolderLockedError';
  }
}

/** Takes the lock of `dir` (created when missing) or throws FolderLockedError. */
async function acquire(dir: string): Promise<string> {
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return file;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
    }
    // Held: by a live process (refused), or left by a killed one (taken over, once).
    const pid = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
    if (Number.isSafeInteger(pid) && pid > 0 && processIsAlive(pid)) throw new FolderLockedError(dir, pid);
    await rm(file, { force: true });
  }
}

/**
 * Runs `fn` holding the lock of `dir`, which is created if missing (and removed again if `fn`
 * fails leaving it empty, so a refused run leaves no folder behind).
 */
export async function withFolderLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const created = await mkdir(dir, { recursive: true });
  const file = await acquire(dir);
  let failed = true;
  try {
    const result = await fn();
    failed = false;
    return result;
  } finally {
    await rm(file, { force: true });
    if (failed && created !== undefined) {
      // Only the folder this call created, and only when nothing was written in it.
      if ((await readdir(dir).catch(() => ['?'])).length === 0) await rmdir(dir).catch(() => undefined);
    }
  }
}
