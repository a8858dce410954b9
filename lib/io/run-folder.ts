/**
 * Which command's run a folder holds, from the files each writes: `monosemantic run` writes
 * run.json beside its config.json; `lm train` a config.json with a `model` section; `train` one
 * with an `sae` section. Used to name the right command when a folder is resumed, or reused, by
 * another.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { isTempFileName, removeAbandonedTempFiles } from './atomic.js';
import { listFolder } from './folders.js';

export type RunFolderKind = 'run' | 'train' | 'lm train';

/** The kind of run in `dir`, or null (no such folder, or none of the three). */
export async function runFolderKind(dir: string): Promise<RunFolderKind | null> {
  if (await stat(path.join(dir, 'run.json')).then((s) => s.isFile(), () => false)) return 'run';
  let config: unknown;
  try {
    config = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
  } catch {
    return null;
  }
  if (typeof config !== 'object' || config === null) return null;
  if ('model' in config) return 'lm train';
  if ('sae' in config) return 'train';
  return null;
}

/** Throws a RangeError naming the right command when `dir` holds another command's run. */
export async function expectRunFolder(dir: string, expected: RunFolderKind): Promise<void> {
  const kind = await runFolderKind(dir);
  if (kind !== null && kind !== expected) {
    throw new RangeError(`${dir} holds a \`monosemantic ${kind}\` run, not a \`monosemantic ${expected}\` one: resume it with \`monosemantic ${kind} --resume ${dir}\``);
  }
}

/**
 * The entries of `dir` (none where it is missing) that a run or build about to write there did
 * not write itself: all but those `isOurs` accepts, hidden files (the lock and its staging files,
 * .DS_Store, .gitkeep) and atomic-write temporaries.
 */
export async function foreignEntries(dir: string, isOurs: (name: string) => boolean | Promise<boolean>): Promise<string[]> {
  const foreign: string[] = [];
  for (const name of await listFolder(dir)) {
    if (name.startsWith('.') || isTempFileName(name) || (await isOurs(name))) continue;
    foreign.push(name);
  }
  return foreign;
}

/**
 * Why a fresh run of one of the `accepted` kinds may not write into `dir`, or null when it may: a
 * missing or empty folder, or one left by a start of such a run that failed before its first
 * checkpoint, is fine; a folder of anything else (a model folder, another command's run, a user's
 * files) would have files replaced.
 */
export async function freshRunFolderProblem(dir: string, accepted: readonly RunFolderKind[]): Promise<string | null> {
  const kind = await runFolderKind(dir);
  if (kind !== null) {
    return accepted.includes(kind) ? null : `${dir} holds a \`monosemantic ${kind}\` run: resume it with \`monosemantic ${kind} --resume ${dir}\`, or choose another folder`;
  }
  // An empty checkpoints/ is what a start that failed before its first checkpoint leaves.
  const foreign = await foreignEntries(dir, async (name) => name === 'checkpoints' && (await listFolder(path.join(dir, name))).length === 0);
  if (foreign.length === 0) return null;
  const listed = foreign.slice(0, 3).join(', ') + (foreign.length > 3 ? `, and ${foreign.length - 3} more` : '');
  return `${dir} is not empty and holds no monosemantic run (${listed}): a run would replace files there; choose a new or empty folder`;
}

/** Removes the temporary files a killed run left in its folder, its sae/ and its model/ (run-folder writes are atomic: tmp, then rename). */
export async function removeAbandonedRunWrites(dir: string): Promise<void> {
  for (const sub of ['', 'sae', 'model']) await removeAbandonedTempFiles(path.join(dir, sub), () => true);
}
