/**
 * The run-folder lock between processes (lib/io/folder-lock.ts): four processes contend for one
 * folder, each taking it five times and retrying when refused; their holds, logged in order to one
 * file, never overlap. A lock left by a killed holder is taken over by the next.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { expect, it } from 'vitest';

import { tempDir } from '../helpers/run-fixtures.js';

const lockModule = path.resolve('dist/lib/io/folder-lock.js');

/** A process that takes the lock of `dir` `times` times, logging each hold's start and end to `log`. */
function contender(dir: string, log: string, times: number): Promise<number | null> {
  const source = `
    import { appendFileSync } from 'node:fs';
    const { withFolderLock, FolderLockedError } = await import(${JSON.stringify(lockModule)});
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    for (let held = 0; held < ${times}; ) {
      try {
        await withFolderLock(${JSON.stringify(dir)}, async () => {
          appendFileSync(${JSON.stringify(log)}, 'start ' + process.pid + '\\n');
          await sleep(15);
          appendFileSync(${JSON.stringify(log)}, 'end ' + process.pid + '\\n');
        });
        held++;
      } catch (error) {
        if (!(error instanceof FolderLockedError)) throw error;
        await sleep(2 + Math.random() * 6);
      }
    }
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('error', reject);
    child.once('exit', resolve);
  });
}

it('four processes contending for one folder hold it one at a time', async () => {
  if (!existsSync(lockModule)) throw new Error(`${lockModule} is missing: run \`npm run build:ts\` first (npm test does)`);
  const root = tempDir('folder-lock');
  const dir = path.join(root, 'run');
  const log = path.join(root, 'holds.log');
  writeFileSync(log, '');
  const codes = await Promise.all([0, 1, 2, 3].map(() => contender(dir, log, 5)));
  expect(codes).toEqual([0, 0, 0, 0]);
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  expect(lines.length).toBe(40);
  for (let i = 0; i < lines.length; i += 2) {
    const [start, end] = [lines[i]!.split(' '), lines[i + 1]!.split(' ')];
    expect([start[0], end[0], end[1]], `hold ${i / 2}`).toEqual(['start', 'end', start[1]]);
  }
  expect(existsSync(path.join(dir, '.lock'))).toBe(false);
}, 60_000);

it('takes over the lock of a killed holder', async () => {
  const root = tempDir('folder-lock');
  const dir = path.join(root, 'run');
  const log = path.join(root, 'holds.log');
  writeFileSync(log, '');
  // A holder killed with SIGKILL (no exit handler runs) while it holds the folder.
  const source = `
    const { withFolderLock } = await import(${JSON.stringify(lockModule)});
    await withFolderLock(${JSON.stringify(dir)}, () => { process.kill(process.pid, 'SIGKILL'); return new Promise(() => {}); });
  `;
  const killed = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: 'ignore' });
  await new Promise((resolve) => killed.once('exit', resolve));
  expect(readFileSync(path.join(dir, '.lock'), 'utf8')).toMatch(new RegExp(`^${killed.pid} [0-9a-f]{16}\\n$`));
  expect(await contender(dir, log, 1)).toBe(0);
  expect(readFileSync(log, 'utf8').split('\n').filter(Boolean).length).toBe(2);
  expect(existsSync(path.join(dir, '.lock'))).toBe(false);
}, 60_000);
