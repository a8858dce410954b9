/**
 * Which command's run a folder holds, from the files each writes: `monosemantic run` writes
 * run.json beside its config.json; `lm train` a config.json with a `model` section; `train` one
 * with an `sae` section. Used to name the right command when a folder is resumed, or reused, by
 * another.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

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
