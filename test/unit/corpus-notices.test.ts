/**
 * scripts/corpus/build-notices.mjs on a tiny fixture: which packages the shipped shards hold
 * documents of (found from each shard's end-of-text tokens, a literal "<|endoftext|>" in a
 * document counted), their copyright lines and licence texts, standard texts for a package
 * without a licence file and for a copyright file that refers to /usr/share/common-licenses,
 * sorted and deterministic output, and refusals (a shard no prefix of its JSONL gives, a licence
 * with no text to print).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { packageRoot } from '../../lib/native/load.js';

interface NoticesOptions {
  shards: { shard: string; jsonl: string }[];
  packagesFile: string;
  endOfText: { id: number; text: string };
  root?: string;
  commonLicences?: string;
}
interface NoticesResult {
  text: string;
  packages: { id: string; shipped: Record<string, number> }[];
  shards: { name: string; documents: number; tokens: number; sha256: string }[];
  standardTexts: string[];
}
interface NoticesModule {
  buildNotices(options: NoticesOptions): NoticesResult;
  copyrightLines(text: string): string[];
}

const EOS = 9;
const endOfText = { id: EOS, text: '<|endoftext|>' };
let notices: NoticesModule;
let scratch: string;

/** A token shard as lib/data/token-shards.ts writes it (version 1, 64-byte header, 2-byte tokens). */
function shardBytes(tokens: number[]): Buffer {
  const body = Buffer.alloc(tokens.length * 2);
  tokens.forEach((token, i) => body.writeUInt16LE(token, 2 * i));
  const header = Buffer.alloc(64);
  header.write('MSTOKENS', 0, 'latin1');
  header.writeUInt32LE(1, 8);
  header.writeUInt32LE(64, 12);
  header.writeUInt32LE(10, 16);
  header.writeUInt32LE(2, 20);
  header.writeBigUInt64LE(BigInt(tokens.length), 24);
  createHash('sha256').update(body).digest().copy(header, 32);
  return Buffer.concat([header, body]);
}

async function writeTree(root: string, files: Record<string, string | Uint8Array>): Promise<void> {
  for (const [relative, contents] of Object.entries(files)) {
    const file = path.join(root, relative);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, contents);
  }
}

const jsonl = (documents: { text: string; package: string }[]): string =>
  documents.map((document) => JSON.stringify({ text: document.text, source: 'fixture', package: document.package, file: 'x' }) + '\n').join('');

const ALPHA_LICENSE = 'MIT License\n\nCopyright (c) 2020 Alpha Author\n\nPermission is hereby granted ... The above copyright notice and this permission notice shall be included.\n';

/** The fixture folder: npm packages, a Debian copyright file, common licences, a build and shards. */
async function fixture(name: string, overrides: { sample?: number[]; betaLicence?: string } = {}): Promise<NoticesOptions> {
  const root = path.join(scratch, name);
  const copyright = path.join(root, 'doc/python3-delta/copyright');
  const packages = [
    { id: 'npm:alpha@1.0.0', type: 'npm', name: 'alpha', version: '1.0.0', licence: 'MIT', author: null, dir: 'node_modules/alpha' },
    { id: 'npm:beta@2.0.0', type: 'npm', name: 'beta', version: '2.0.0', licence: overrides.betaLicence ?? 'ISC', author: 'Beta Person <beta@example.com>', dir: 'node_modules/beta' },
    { id: 'npm:gamma@3.0.0', type: 'npm', name: 'gamma', version: '3.0.0', licence: 'MIT', author: null, dir: 'node_modules/gamma' },
    { id: 'deb:python3-delta', type: 'deb', name: 'python3-delta', version: '1.2-3', licence: 'Apache-2.0', copyright },
  ];
  await writeTree(root, {
    'node_modules/alpha/package.json': '{"name": "alpha", "version": "1.0.0", "license": "MIT"}',
    'node_modules/alpha/LICENSE': ALPHA_LICENSE.replaceAll('\n', '\r\n'),
    'node_modules/beta/package.json': '{"name": "beta", "version": "2.0.0", "license": "ISC"}',
    'node_modules/gamma/package.json': '{"name": "gamma", "version": "3.0.0", "license": "MIT"}',
    'node_modules/gamma/LICENSE': 'Copyright (c) Gamma Author\n',
    'doc/python3-delta/copyright':
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: 2021 Delta Developer\n 2022 Another Developer\nLicense: Apache-2.0\n On Debian systems, see /usr/share/common-licenses/Apache-2.0.\n',
    'common-licenses/Apache-2.0': 'Apache License, Version 2.0 (fixture text)\n',
    'build/packages.json': JSON.stringify({ format: 'monosemantic-corpus-packages', version: 1, packages }),
    'build/val.jsonl': jsonl([{ text: 'import delta', package: 'deb:python3-delta' }]),
    'build/train.jsonl': jsonl([
      { text: 'alpha()', package: 'npm:alpha@1.0.0' },
      { text: 'beta <|endoftext|> inside', package: 'npm:beta@2.0.0' },
      { text: 'gamma, not in the sample', package: 'npm:gamma@3.0.0' },
    ]),
    'shards/val.tokens': shardBytes([5, 6]),
    // alpha, EOS, beta (whose literal <|endoftext|> is the EOS token too): gamma is not in it.
    'shards/train-sample.tokens': shardBytes(overrides.sample ?? [1, 2, EOS, 3, EOS, 4]),
  });
  return {
    shards: [
      { shard: path.join(root, 'shards/val.tokens'), jsonl: path.join(root, 'build/val.jsonl') },
      { shard: path.join(root, 'shards/train-sample.tokens'), jsonl: path.join(root, 'build/train.jsonl') },
    ],
    packagesFile: path.join(root, 'build/packages.json'),
    endOfText,
    root,
    commonLicences: path.join(root, 'common-licenses'),
  };
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'monosemantic-notices-'));
  const url = pathToFileURL(path.join(packageRoot(), 'scripts/corpus/build-notices.mjs')).href;
  notices = (await import(url)) as NoticesModule;
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('build-notices', () => {
  it('lists the packages of the shipped documents, sorted, with their notices and licence texts', async () => {
    const options = await fixture('basic');
    const result = notices.buildNotices(options);

    expect(result.shards.map(({ name, documents, tokens }) => [name, documents, tokens])).toEqual([
      ['val.tokens', 1, 2],
      ['train-sample.tokens', 2, 6],
    ]);
    expect(result.packages.map(({ id, shipped }) => [id, shipped])).toEqual([
      ['npm:alpha@1.0.0', { 'train-sample.tokens': 1 }],
      ['npm:beta@2.0.0', { 'train-sample.tokens': 1 }],
      ['deb:python3-delta', { 'val.tokens': 1 }],
    ]);
    expect(result.standardTexts).toEqual(['Apache-2.0', 'ISC']);

    const text = result.text;
    expect(text).not.toContain('gamma');
    // alpha: its own licence file, whole (CRLF read as LF), and its copyright line.
    expect(text).toContain('npm package alpha 1.0.0');
    expect(text).toContain('Copyright:\n  Copyright (c) 2020 Alpha Author\n');
    expect(text).toContain(ALPHA_LICENSE.trimEnd());
    expect(text).not.toContain('\r');
    // beta: no licence file, so the standard ISC text, and the author as the holder.
    expect(text).toContain('the author its package.json names: Beta Person <beta@example.com>');
    expect(text).toMatch(/Standard licence text: ISC\n[^\n]*\n=+\n\nISC License\n\nCopyright \(c\) <year> <copyright holders>/);
    // delta: the Debian copyright file, its DEP-5 Copyright field, and the standard text it refers to, once.
    expect(text).toContain('Debian package python3-delta 1.2-3');
    expect(text).toContain('Copyright:\n  2021 Delta Developer\n  2022 Another Developer\n');
    expect(text).toContain('refers to (printed under "Standard licence texts" at the end): Apache-2.0.');
    expect(text.split('Apache License, Version 2.0 (fixture text)').length - 1).toBe(1);
    // npm packages first, then Debian ones; the same inputs give the same bytes.
    expect(text.indexOf('npm package alpha')).toBeLessThan(text.indexOf('npm package beta'));
    expect(text.indexOf('npm package beta')).toBeLessThan(text.indexOf('Debian package python3-delta'));
    expect(notices.buildNotices(options).text).toBe(text);
  });

  it('refuses a shard whose end-of-text tokens no prefix of its JSONL gives', async () => {
    const options = await fixture('mismatch', { sample: [1, EOS, 2, EOS, 3, EOS, 4, EOS, 5] });
    expect(() => notices.buildNotices(options)).toThrow(/4 end-of-text tokens, which no prefix/);
  });

  it('refuses a package with no licence file and no standard text for its licence', async () => {
    const options = await fixture('no-text', { betaLicence: 'BlueOak-1.0.0' });
    expect(() => notices.buildNotices(options)).toThrow(/npm:beta@2\.0\.0: no licence file, and no standard text for its licence BlueOak-1\.0\.0/);
  });

  it('finds copyright lines, not licence prose that mentions copyright', () => {
    const text = [
      'The MIT License (MIT)',
      '',
      'Copyright (c) 2015, Rebecca Turner <me@re-becca.org>',
      'Copyright npm, Inc.',
      'Original code Copyright Julian Gruber <julian@juliangruber.com>',
      'The above copyright notice and this permission notice shall be included',
      'IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE',
      '   (c) You must retain, in the Source form of any Derivative Works',
      '   Copyright [yyyy] [name of copyright owner]',
      'Copyright (c) 2015, Rebecca Turner <me@re-becca.org>',
    ].join('\n');
    expect(notices.copyrightLines(text)).toEqual([
      'Copyright (c) 2015, Rebecca Turner <me@re-becca.org>',
      'Copyright npm, Inc.',
      'Original code Copyright Julian Gruber <julian@juliangruber.com>',
    ]);
  });
});
