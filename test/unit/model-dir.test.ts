/** modelDirOf: `a` and `b` name the package's models unless a folder of that name is in the working directory. */
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { expect, it } from 'vitest';

import { modelDirOf, shippedModelDir } from '../../lib/lm/default-model.js';
import { runCli } from '../helpers/cli.js';

it('maps a and b to the package models, and leaves paths as they are', () => {
  expect(modelDirOf('a')).toBe(shippedModelDir('a'));
  expect(modelDirOf('b')).toBe(shippedModelDir('b'));
  expect(modelDirOf('models/b')).toBe('models/b');
  expect(modelDirOf('c')).toBe('c');
});

it('takes --model b as the package model B from any working directory', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ms-model-dir-'));
  try {
    const r = runCli(['generate', '--model', 'b', '--prompt', 'Hello', '-n', '2', '--greedy'], {}, dir);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith('Hello')).toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('prefers a folder named b in the working directory', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ms-model-dir-'));
  try {
    mkdirSync(path.join(dir, 'b'));
    const r = runCli(['generate', '--model', 'b', '--prompt', 'x', '-n', '1'], {}, dir);
    expect(r.stderr).toMatch(/b\/tokenizer\.json: not found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
