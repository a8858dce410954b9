/**
 * Crash-safe file replacement: a reader sees either the old file or the whole new one, never a
 * half-written one. The data goes to a uniquely named temporary file beside the target, is synced
 * to disk, and is renamed over the target; the directory is synced so the rename itself survives
 * a crash.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

import { listFolder } from './folders.js';

/** Error codes of filesystems that cannot sync a directory (the rename is still done). */
const DIRECTORY_SYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR']);

/** Flushes a directory's entries (new names, renames) to disk. A no-op on Windows. */
export async function fsyncDir(dir: string): Promise<void> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a non-empty string');
  if (process.platform === 'win32') return; // directories cannot be opened for syncing there
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (error) {
    if (!DIRECTORY_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await handle.close();
  }
}

/**
 * Writes `data` to `filePath` atomically: `filePath.tmp-<pid>-<random>` is written and synced,
 * then renamed over `filePath`, then the directory is synced. On failure the temporary file is
 * removed and `filePath` is left as it was.
 */
export async function writeFileAtomic(filePath: string, data: Buffer | string): Promise<void> {
  if (typeof filePath !== 'string' || filePath === '') throw new TypeError('path must be a non-empty string');
  if (typeof data !== 'string' && !Buffer.isBuffer(data)) throw new TypeError('data must be a Buffer or a string');
  const tempPath = `${filePath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let handle: FileHandle | undefined;
  try {
    handle = await open(tempPath, 'wx');
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tempPath, filePath);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(tempPath, { force: true }).catch(() => undefined);
    throw error;
  }
  await fsyncDir(path.dirname(filePath));
}

/** A temporary file of writeFileAtomic: `<name>.tmp-<pid>-<12 hex digits>`. */
const TEMP_NAME = /^(.+)\.tmp-(\d+)-[0-9a-f]{12}$/;

/** Whether a file name is one of writeFileAtomic's temporary files. */
export function isTempFileName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/**
 * Removes the temporary files writeFileAtomic left in `dir` when its process was killed mid-write
 * (those whose target name passes `isOurs` and whose writing process is gone); returns their names.
 * A missing `dir` has none. "Gone" is judged by process id on this machine: a folder written by
 * processes on several machines at once (a shared filesystem) is not supported.
 */
export async function removeAbandonedTempFiles(dir: string, isOurs: (target: string) => boolean): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await listFolder(dir)) {
    const match = TEMP_NAME.exec(name);
    if (match === null || !isOurs(match[1]!) || processIsAlive(Number(match[2]))) continue;
    await rm(path.join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}

/** Whether a process of this id runs (one owned by another user counts as running). */
export function processIsAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
