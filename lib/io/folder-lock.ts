/**
 * One writer per run folder: a run holds `<folder>/.lock` for as long as it trains, so a second
 * run or resume of the same folder is refused instead of racing the first over checkpoints and
 * logs.
 *
 * The lock file holds `<pid> <random token>`. It is written whole to a temporary file first and
 * then hard-linked to `.lock`, which fails if `.lock` exists: there is no moment when another
 * process could read a half-written lock. A lock whose process is gone (a run that was killed) is
 * taken over: moved aside under a unique name, checked to still be the lock that was judged stale,
 * then replaced. A lock naming this process's own id but a token it does not hold is stale too
 * (a container restarted under the same pid). As with the temporary files, "gone" is judged by
 * process id on this machine. Locks still held when the process exits (Ctrl-C twice) are removed
 * on exit.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { link, readFile, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { processIsAlive } from './atomic.js';
import { makeFolder } from './folders.js';

/** The lock file's name in a run folder. */
export const LOCK_FILE = '.lock';

/** A run folder held by another process (or by another run in this one). */
export class FolderLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    const by = Number.isSafeInteger(pid) ? `pid ${pid}` : 'a lock being written';
    super(`${dir} is in use by another monosemantic run (${by}): wait for it to finish or stop it (if none is running, delete ${path.join(dir, LOCK_FILE)})`);
    this.name = 'FolderLockedError';
  }
}

/** The locks this process holds: lock file → its content. */
const held = new Map<string, string>();
let exitHook = false;

/** What a lock file says: its process id (NaN when unreadable) and whether this process holds it. */
function owner(content: string | null): { pid: number; ours: boolean } {
  const pid = content === null ? Number.NaN : Number.parseInt(content, 10);
  return { pid, ours: content !== null && [...held.values()].includes(content) };
}

function isStale(content: string | null): boolean {
  // Gone meanwhile (try again), or being written where hard links are not supported.
  if (content === null || content === '') return false;
  const { pid, ours } = owner(content);
  if (ours) return false;
  if (!Number.isSafeInteger(pid) || pid <= 0) return true; // not a lock this code wrote whole
  return pid === process.pid || !processIsAlive(pid);
}

const readLock = (file: string) => readFile(file, 'utf8').catch(() => null);

/** Takes the lock of `dir` (which exists) or throws FolderLockedError. */
async function acquire(dir: string): Promise<string> {
  const file = path.join(dir, LOCK_FILE);
  const content = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
  const staging = `${file}.${randomBytes(6).toString('hex')}.new`;
  await writeFile(staging, content, { flag: 'wx' });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await linkOrCreate(staging, file, content);
        held.set(file, content);
        if (!exitHook) {
          exitHook = true;
          process.on('exit', () => {
            for (const lock of held.keys()) rmSync(lock, { force: true });
          });
        }
        return file;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const current = await readLock(file);
      if (current !== null && !isStale(current)) throw new FolderLockedError(dir, owner(current).pid);
      if (current === null) continue; // released meanwhile
      // Stale: moved aside, and removed only if it is still the lock judged stale (another process
      // may have taken over between the read and the move: then its lock goes back).
      const aside = `${file}.${randomBytes(6).toString('hex')}.stale`;
      try {
        await rename(file, aside);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const moved = await readLock(aside);
      if (moved !== current) {
        await link(aside, file).catch(() => undefined);
        await rm(aside, { force: true });
        throw new FolderLockedError(dir, owner(moved).pid);
      }
      await rm(aside, { force: true });
    }
    throw new FolderLockedError(dir, owner(await readLock(file)).pid);
  } finally {
    await rm(staging, { force: true });
  }
}

/** Error codes of filesystems without hard links (FAT, some network filesystems). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);

/**
 * Puts `content` at `file` unless `file` exists (EEXIST): by hard-linking the whole staging file,
 * or where the filesystem has no hard links, by an exclusive create and a write (a reader may then
 * see it empty for a moment, which counts as held).
 */
async function linkOrCreate(staging: string, file: string, content: string): Promise<void> {
  try {
    await link(staging, file);
  } catch (error) {
    if (!NO_HARD_LINKS.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    await writeFile(file, content, { flag: 'wx' });
  }
}

/** Removes the lock if it is still this process's. */
async function release(file: string): Promise<void> {
  const content = held.get(file);
  held.delete(file);
  if (content !== undefined && (await readLock(file)) === content) await rm(file, { force: true });
}

/**
 * Runs `fn` holding the lock of `dir`, which is created if missing. If `fn` fails, the folders
 * this call created are removed again where nothing was written in them (a refused run leaves no
 * folder behind).
 */
export async function withFolderLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const absolute = path.resolve(dir);
  const created = await makeFolder(absolute);
  let file: string;
  try {
    file = await acquire(absolute);
  } catch (error) {
    await removeEmptyFolders(absolute, created);
    throw error;
  }
  let failed = true;
  try {
    const result = await fn();
    failed = false;
    return result;
  } finally {
    await release(file);
    if (failed) await removeEmptyFolders(absolute, created);
  }
}

/** Removes `dir` and its parents up to `created` (the first folder mkdir made), each only while empty. */
async function removeEmptyFolders(dir: string, created: string | undefined): Promise<void> {
  if (created === undefined) return;
  for (let d = dir; ; d = path.dirname(d)) {
    if ((await readdir(d).catch(() => ['?'])).length > 0) return;
    if ((await rmdir(d).then(() => true, () => false)) === false || d === created) return;
  }
}
