/**
 * makeFolder and listFolder (lib/io/folders.ts). A read-only filesystem cannot be mounted in a test,
 * so mkdir is wrapped: under `readOnly.root` it fails as Node's does on a read-only mount (ENOENT in
 * recursive mode, EROFS when one folder is made).
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const readOnly = vi.hoisted(() => ({ root: '\0none' }));

vi.mock('node:fs/promises', async (original) => {
  const fs = await original<typeof import('node:fs/promises')>();
  const fail = (code: string, text: string, p: string) => Object.assign(new Error(`${code}: ${text}, mkdir '${p}'`), { code, syscall: 'mkdir', path: p });
  const mkdir = async (p: string, options?: { recursive?: boolean }) => {
    if (path.resolve(p).startsWith(readOnly.root)) {
      throw options?.recursive ? fail('ENOENT', 'no such file or directory', p) : fail('EROFS', 'read-only file system', p);
    }
    return fs.mkdir(p, options);
  };
  return { ...fs, mkdir, default: { ...fs, mkdir } };
});

import { listFolder, makeFolder } from '../../lib/io/folders.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ms-folders-'));
  readOnly.root = path.join(dir, 'mounted-read-only');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('makeFolder', () => {
  it('creates missing parents and returns the first folder it made, as mkdir -p does', async () => {
    const target = path.join(dir, 'a', 'b', 'c');
    expect(await makeFolder(target)).toBe(path.join(dir, 'a'));
    expect((await stat(target)).isDirectory()).toBe(true);
    expect(await makeFolder(target)).toBeUndefined();
  });

  it('reports the error that stopped it, not ENOENT, on a read-only filesystem', async () => {
    const target = path.join(readOnly.root, 'run', 'sae');
    await expect(makeFolder(target)).rejects.toMatchObject({ code: 'EROFS', message: expect.stringContaining(path.join(readOnly.root)) });
  });

  it('names a file that stands where a folder is needed', async () => {
    const file = path.join(dir, 'plain-file');
    await writeFile(file, 'x');
    await expect(makeFolder(path.join(file, 'run'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    await expect(makeFolder(file)).rejects.toMatchObject({ code: 'EEXIST' });
  });
});

describe('listFolder', () => {
  it('lists a folder, and gives nothing for a missing path or a file', async () => {
    const folder = path.join(dir, 'listed');
    await makeFolder(folder);
    await writeFile(path.join(folder, 'one'), '1');
    expect(await listFolder(folder)).toEqual(['one']);
    expect(await listFolder(path.join(dir, 'missing'))).toEqual([]);
    expect(await listFolder(path.join(folder, 'one'))).toEqual([]);
  });
});
