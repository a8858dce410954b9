/**
 * Making and listing folders, with the errors that say what is wrong.
 *
 * Node's recursive mkdir reports a failure to make a missing folder as ENOENT where the error is
 * not one it passes on (it does pass on EACCES, EPERM, ENOSPC, ENOTDIR): on a read-only filesystem
 * (EROFS), for one. A user told "no such file or directory" for the very folder they asked to
 * create cannot act on it. makeFolder finds the real error.
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

async function isPresent(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Creates `dir` and its missing parents; returns the first folder it created (undefined when `dir`
 * was there already), as mkdir's recursive mode does. Where that fails with ENOENT, the outermost
 * missing folder is made on its own, so that the error thrown is the one that stopped it (EROFS...).
 */
export async function makeFolder(dir: string): Promise<string | undefined> {
  try {
    return await mkdir(dir, { recursive: true });
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
    // The outermost missing folder: its parent exists (or is the root).
    let missing = path.resolve(dir);
    for (let parent = path.dirname(missing); parent !== missing && !(await isPresent(parent)); parent = path.dirname(missing)) {
      missing = parent;
    }
    try {
      await mkdir(missing); // throws the real error
    } catch (cause) {
      if (errorCode(cause) !== 'EEXIST') throw cause; // made meanwhile by another process: go on
    }
    // It could be made after all (another process made or removed folders meanwhile): go on from it.
    await mkdir(dir, { recursive: true });
    return missing;
  }
}

/** The names in `dir`; none where it is missing or is not a folder. */
export async function listFolder(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
}
