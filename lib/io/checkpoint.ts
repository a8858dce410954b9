/**
 * Training checkpoints: one folder per checkpoint, `checkpoints/step-000012500/`, holding named
 * files and a manifest.json with each file's size and SHA-256.
 *
 * Writing is atomic: the files go into a temporary folder (each fsynced), the manifest last,
 * then the folder is renamed into place and the parent fsynced — a crash leaves either the old
 * set of checkpoints or the new one, never a half-written checkpoint under a final name. Only the
 * newest `keep` checkpoints are kept, and only after the new one is in place. A checkpoint of a
 * step that already has one (a resumed run saving again before its next step) replaces it the
 * same way: the old folder is first renamed aside (`step-….replaced`), the new one renamed in, the
 * old one deleted; a crash between the two renames leaves the old one, which is listed (and read)
 * under its aside name until a later write puts it back or replaces it.
 *
 * Reading verifies the manifest, every file's size and checksum, and that the checkpoint is
 * complete: it holds every file its trainer's layout lists (`CheckpointLayout`, declared by
 * lib/sae/trainer.ts and lib/lm/lm-trainer.ts), and a state.json with every field the trainer
 * resumes from. A corrupt, truncated or incomplete
 * checkpoint is a CheckpointError naming the file and the problem, and `latestGoodCheckpoint`
 * falls back to the previous one.
 */
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';

import { z } from 'zod';

import { fsyncDir } from './atomic.js';
import { makeFolder } from './folders.js';
import { readWholeFile, sha256Hex } from './large-files.js';

const FORMAT = 'monosemantic-checkpoint';
const VERSION = 1;
const NAME = /^step-(\d{9,})(\.replaced)?$/;

export class CheckpointError extends Error {
  readonly path: string;
  constructor(checkpointPath: string, message: string) {
    super(`checkpoint ${checkpointPath}: ${message}`);
    this.name = 'CheckpointError';
    this.path = checkpointPath;
  }
}

const ManifestSchema = z.object({
  format: z.literal(FORMAT),
  version: z.literal(VERSION),
  step: z.number().int().nonnegative(),
  files: z.record(z.string(), z.object({ bytes: z.number().int().nonnegative(), sha256: z.string() })),
});
type Manifest = z.infer<typeof ManifestSchema>;

/**
 * What one trainer writes into a checkpoint: its files (state.json among them) and the schema of
 * the state.json it resumes from (a data source checks its own part of the state). Each trainer
 * declares its own (lib/sae/trainer.ts, lib/lm/lm-trainer.ts).
 */
export interface CheckpointLayout<State extends { step: number }> {
  /** Who writes it, for messages: 'an SAE trainer'. */
  trainer: string;
  files: readonly string[];
  state: z.ZodType<State>;
}

/** Checks that a verified checkpoint holds `layout`'s files, and returns its parsed state.json. */
function checkComplete<State extends { step: number }>(checkpointPath: string, manifest: Manifest, files: Record<string, Buffer>, layout: CheckpointLayout<State>): State {
  const listed = Object.keys(manifest.files);
  for (const name of layout.files) {
    if (!listed.includes(name)) throw new CheckpointError(checkpointPath, `${name} is not listed in manifest.json (${layout.trainer} writes ${layout.files.join(', ')})`);
  }
  let state: unknown;
  try {
    state = JSON.parse(files['state.json']!.toString('utf8'));
  } catch (error) {
    throw new CheckpointError(checkpointPath, `state.json is not valid JSON (${(error as Error).message})`);
  }
  const parsed = layout.state.safeParse(state);
  if (!parsed.success) {
    const [first, ...more] = parsed.error.issues;
    const field = first!.path.map(String).join('.') || '(the whole file)';
    throw new CheckpointError(checkpointPath, `state.json: ${field}: ${first!.message}${more.length > 0 ? ` (and ${more.length} more problem${more.length === 1 ? '' : 's'})` : ''}`);
  }
  if (parsed.data.step !== manifest.step) {
    throw new CheckpointError(checkpointPath, `state.json is for step ${parsed.data.step}, manifest.json for step ${manifest.step}`);
  }
  return parsed.data;
}

export interface Checkpoint<State = unknown> {
  step: number;
  path: string;
  /** Every file the manifest lists, verified. */
  files: Record<string, Buffer>;
  /** state.json as its trainer's layout parsed it. */
  state: State;
}

async function writeSynced(file: string, data: Buffer): Promise<void> {
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(9, '0')}`;
}

/**
 * Checkpoint folders under `dir`, oldest first (temporary folders are not listed). A step's folder
 * set aside by an interrupted replacement (`.replaced`) is listed only where the step has no other.
 */
export async function listCheckpoints(dir: string): Promise<{ step: number; path: string }[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const byStep = new Map<number, { step: number; path: string; aside: boolean }>();
  for (const name of names) {
    const m = NAME.exec(name);
    if (!m) continue;
    const entry = { step: Number(m[1]), path: path.join(dir, name), aside: m[2] !== undefined };
    const held = byStep.get(entry.step);
    if (!held || (held.aside && !entry.aside)) byStep.set(entry.step, entry);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step).map(({ step, path: p }) => ({ step, path: p }));
}

/**
 * Settles what a crash left under `dir`: temporary folders are deleted, and a step's folder set
 * aside by an interrupted replacement is put back when the step has no other, deleted otherwise.
 */
async function settleInterruptedWrites(dir: string): Promise<void> {
  const names = await readdir(dir);
  for (const name of names) {
    if (name.includes('.tmp-')) {
      await rm(path.join(dir, name), { recursive: true, force: true });
    } else if (name.endsWith('.replaced')) {
      const finalName = name.slice(0, -'.replaced'.length);
      if (names.includes(finalName)) await rm(path.join(dir, name), { recursive: true, force: true });
      else await rename(path.join(dir, name), path.join(dir, finalName));
    }
  }
}

/** Writes a checkpoint of `files` for `step` under `dir` atomically, then keeps the newest `keep`. */
export async function writeCheckpoint(dir: string, step: number, files: Record<string, Buffer | string>, keep: number): Promise<string> {
  await makeFolder(dir);
  await settleInterruptedWrites(dir);
  const finalPath = path.join(dir, checkpointName(step));
  const tmpPath = `${finalPath}.tmp-${process.pid}`;
  const asidePath = `${finalPath}.replaced`;
  await mkdir(tmpPath);
  try {
    const manifest: Manifest = { format: FORMAT, version: VERSION, step, files: {} };
    for (const [name, content] of Object.entries(files)) {
      if (name === 'manifest.json' || name.includes('/')) throw new RangeError(`invalid checkpoint file name '${name}'`);
      const data = typeof content === 'string' ? Buffer.from(content) : content;
      await writeSynced(path.join(tmpPath, name), data);
      manifest.files[name] = { bytes: data.length, sha256: sha256Hex(data) };
    }
    await writeSynced(path.join(tmpPath, 'manifest.json'), Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
    await fsyncDir(tmpPath);
    // A checkpoint of the same step is replaced: set aside until the new one is in place.
    let replacing = true;
    try {
      await rename(finalPath, asidePath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      replacing = false; // no checkpoint of this step yet
    }
    try {
      await rename(tmpPath, finalPath);
    } catch (error) {
      if (replacing) await rename(asidePath, finalPath);
      throw error;
    }
    await fsyncDir(dir);
    if (replacing) await rm(asidePath, { recursive: true, force: true });
  } catch (error) {
    await rm(tmpPath, { recursive: true, force: true });
    throw error;
  }
  const all = await listCheckpoints(dir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) await rm(old.path, { recursive: true, force: true });
  return finalPath;
}

/** Reads and verifies one checkpoint folder, and checks that it is a complete one of `layout`'s trainer. */
export async function readCheckpoint<State extends { step: number }>(checkpointPath: string, layout: CheckpointLayout<State>): Promise<Checkpoint<State>> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path.join(checkpointPath, 'manifest.json'), 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CheckpointError(checkpointPath, code === 'ENOENT' ? 'manifest.json is missing' : `manifest.json is unreadable (${(error as Error).message})`);
  }
  const parsedManifest = ManifestSchema.safeParse(json);
  if (!parsedManifest.success) throw new CheckpointError(checkpointPath, `manifest.json is not a ${FORMAT} version ${VERSION} manifest`);
  const manifest = parsedManifest.data;
  const files: Record<string, Buffer> = {};
  for (const [name, expected] of Object.entries(manifest.files)) {
    const file = path.join(checkpointPath, name);
    const unreadable = (error: unknown) =>
      new CheckpointError(checkpointPath, (error as NodeJS.ErrnoException).code === 'ENOENT' ? `${name} is missing` : `${name} cannot be read (${(error as Error).message})`);
    // The size first: a truncated file is told without reading it.
    const info = await stat(file).catch((error: unknown) => {
      throw unreadable(error);
    });
    if (!info.isFile()) throw new CheckpointError(checkpointPath, `${name} is not a file`);
    const size = info.size;
    if (size !== expected.bytes) {
      throw new CheckpointError(checkpointPath, `${name} holds ${size} bytes, the manifest says ${expected.bytes} (truncated or overwritten)`);
    }
    // Not fs.readFile, which refuses files of 2 GiB or more.
    const data = await readWholeFile(file).catch((error: unknown) => {
      throw unreadable(error);
    });
    if (data.length !== expected.bytes) {
      throw new CheckpointError(checkpointPath, `${name} holds ${data.length} bytes, the manifest says ${expected.bytes} (truncated or overwritten)`);
    }
    if (sha256Hex(data) !== expected.sha256) throw new CheckpointError(checkpointPath, `${name} fails its SHA-256 check (corrupt)`);
    files[name] = data;
  }
  const state = checkComplete(checkpointPath, manifest, files, layout);
  return { step: manifest.step, path: checkpointPath, files, state };
}

/**
 * The newest checkpoint under `dir` that verifies; `onSkip` hears about each newer one that did
 * not. Null when there is none.
 */
export async function latestGoodCheckpoint<State extends { step: number }>(
  dir: string,
  layout: CheckpointLayout<State>,
  onSkip?: (error: CheckpointError) => void,
): Promise<Checkpoint<State> | null> {
  const all = await listCheckpoints(dir);
  for (const entry of all.reverse()) {
    try {
      return await readCheckpoint(entry.path, layout);
    } catch (error) {
      if (!(error instanceof CheckpointError)) throw error;
      onSkip?.(error);
    }
  }
  return null;
}
