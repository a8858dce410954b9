#!/usr/bin/env node
/**
 * Writes corpus/NOTICES: the copyright notices and licence texts of every package that has a
 * document in a shipped token shard (corpus/val.tokens, corpus/train-sample.tokens). Their
 * licences (MIT, ISC, BSD, Apache-2.0, PSF, ...) ask that copies carry the copyright notice and
 * the licence text; the shards are lossless encodings of the documents, so they are copies.
 *
 *   node scripts/corpus/build-notices.mjs [--build corpus/build] [--out corpus/NOTICES]
 *       [--val corpus/val.tokens] [--sample corpus/train-sample.tokens] [--tokenizer corpus/tokenizer.json]
 *
 * (scripts/corpus/build-shards.mjs runs it after writing the shards.) Inputs: BUILD/train.jsonl and
 * BUILD/val.jsonl, whose lines name each document's package ("package": an id of
 * BUILD/packages.json), and BUILD/packages.json, all written by scripts/corpus/build-corpus.mjs;
 * the shards; the tokenizer (its end-of-text token).
 *
 * Which documents a shard holds: a shard is the documents of its JSONL file from the first one,
 * in order, separated by the end-of-text token (val.tokens all of val.jsonl, train-sample.tokens
 * the first documents of train.jsonl, up to --max-tokens). So the number of end-of-text tokens
 * in the shard gives the number of documents: one separator between two documents, plus one for
 * every "<|endoftext|>" written inside a document's text (the tokenizer matches that text as the
 * token; a document the tokenize CLI reads in pieces is still one). A count that no prefix
 * matches is refused.
 *
 * For each package (sorted: npm packages, then Debian packages, each by name): name, version,
 * the licence it declares, how many of its documents each shipped shard holds, the copyright
 * lines of its licence files, and the full text of those files: an npm package's LICENSE /
 * LICENCE / COPYING / NOTICE files (any extension), a Debian package's
 * /usr/share/doc/NAME/copyright. A text already printed for an earlier package is referred to,
 * not repeated. A package without a licence file gets the standard text of its declared licence
 * (MIT and ISC from the SPDX list, with the copyright holder named in the entry; others from
 * /usr/share/common-licenses), and the /usr/share/common-licenses texts a copyright file refers
 * to are printed too: each standard text once, at the end, referred to from the entries.
 *
 * Deterministic: the same inputs give the same bytes (no dates, no machine-specific paths
 * other than where the licence files were read).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Where Debian keeps the standard licence texts its copyright files refer to. */
export const COMMON_LICENCES = '/usr/share/common-licenses';

/** Licence files of an npm package: LICENSE, LICENCE, COPYING, NOTICE, any case, any extension or suffix. */
const NPM_LICENCE_FILE = /^(?:licen[cs]e|copying|notice)(?:[.-][^/]*)?$/i;

/** Standard texts for licences /usr/share/common-licenses lacks (SPDX License List wording). */
const STANDARD_TEXTS = {
  MIT: `MIT License

Copyright (c) <year> <copyright holders>

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.`,
  ISC: `ISC License

Copyright (c) <year> <copyright holders>

Permission to use, copy, modify, and/or distribute this software for any purpose with or without
fee is hereby granted, provided that the above copyright notice and this permission notice appear
in all copies.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS
SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE
AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT,
NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE OF
THIS SOFTWARE.`,
};

const RULE = '='.repeat(100);
const THIN_RULE = '-'.repeat(100);

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A text file's contents: UTF-8 when valid, else Latin-1; CRLF and CR as LF, trailing blanks of the end removed. */
function readText(file) {
  const bytes = readFileSync(file);
  const text = isUtf8(bytes) ? bytes.toString('utf8') : bytes.toString('latin1');
  return text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n').trimEnd();
}

/** The end-of-text token of a tokenizer.json: its id and text. */
export function endOfTextToken(tokenizerPath, content = '<|endoftext|>') {
  const json = JSON.parse(readFileSync(tokenizerPath, 'utf8'));
  const token = (json.added_tokens ?? []).find((added) => added.content === content);
  if (token === undefined) throw new Error(`${tokenizerPath}: no added token ${content}`);
  return { id: token.id, text: content };
}

/** A token shard's tokens (lib/data/token-shards.ts's format, read here so the script needs no build). */
export function readShardTokens(file) {
  const bytes = readFileSync(file);
  if (bytes.length < 64 || bytes.toString('latin1', 0, 8) !== 'MSTOKENS') throw new Error(`${file}: not a token shard (no MSTOKENS header)`);
  const version = bytes.readUInt32LE(8);
  const headerBytes = bytes.readUInt32LE(12);
  const width = bytes.readUInt32LE(20);
  const count = Number(bytes.readBigUInt64LE(24));
  if (version !== 1 || headerBytes < 64 || (width !== 2 && width !== 4) || bytes.length !== headerBytes + count * width) {
    throw new Error(`${file}: unexpected token shard header (version ${version}, header ${headerBytes} bytes, width ${width}, ${count} tokens, file ${bytes.length} bytes)`);
  }
  const body = bytes.subarray(headerBytes);
  const tokens = width === 2 ? new Uint16Array(count) : new Uint32Array(count);
  for (let i = 0; i < count; i++) tokens[i] = width === 2 ? body.readUInt16LE(2 * i) : body.readUInt32LE(4 * i);
  return { tokens, sha256: bytes.subarray(32, 64).toString('hex') };
}

/** The lines of a JSONL file, parsed, in order. */
function* jsonlDocuments(file) {
  const text = readFileSync(file, 'utf8');
  let start = 0;
  let line = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    const raw = text.slice(start, end);
    start = end + 1;
    if (raw.trim() === '') continue;
    const document = JSON.parse(raw);
    if (typeof document.text !== 'string' || document.text === '') throw new Error(`${file}:${line}: no text`);
    yield { ...document, line };
  }
}

function occurrences(text, needle) {
  let count = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) count++;
  return count;
}

/**
 * The documents of `jsonl` that the shard `shard` holds: the first N, N found from the shard's
 * end-of-text tokens (see the header). Returns { documents, tokens, sha256 }.
 */
export function shardDocuments(shard, jsonl, endOfText) {
  const { tokens, sha256 } = readShardTokens(shard);
  let separators = 0;
  for (const token of tokens) if (token === endOfText.id) separators++;
  const documents = [];
  if (tokens.length > 0) {
    let seen = -1;
    for (const document of jsonlDocuments(jsonl)) {
      seen += 1 + occurrences(document.text, endOfText.text);
      documents.push(document);
      if (seen >= separators) break;
    }
    if (seen !== separators) {
      throw new Error(`${shard}: ${separators} end-of-text tokens, which no prefix of ${jsonl} gives (${documents.length} documents give ${seen}): the shard was not made from this file`);
    }
  }
  return { documents, tokens: tokens.length, sha256 };
}

/** Words after "copyright" that make it licence prose ("copyright notice", "COPYRIGHT HOLDERS"), not a notice. */
const NOT_A_NOTICE = /^(?:notices?|licen[cs]es?|holders?|owners?|act|law|laws|statements?|interests?|claims?|protection|infringement|and|or|of|the|to|in|is|on|by the|under|information|file|\[)/i;

/** Whether a line holds a copyright notice: "Copyright (c) 2020 Name", "Copyright npm, Inc.", "Original code Copyright Name", "(c) 2010 Name", "© Name". */
function isCopyrightLine(line) {
  if (/^(?:\(c\)\s*\d|©\s*\S)/i.test(line)) return true;
  for (const match of line.matchAll(/\b(?:copyright|Copyright|COPYRIGHT)\b(?:\s*:)?\s*/g)) {
    const rest = line.slice(match.index + match[0].length);
    if (/^(?:\(c\)|©|\d)/i.test(rest)) return true;
    // At the start of a line any holder will do ("Copyright npm, Inc."); inside one, a capitalised one.
    if ((match.index === 0 ? /^\S/ : /^[A-Z]/).test(rest) && !NOT_A_NOTICE.test(rest)) return true;
  }
  return false;
}

/** Copyright lines of a licence file: a DEP-5 copyright file's Copyright fields, else the lines that start a notice. */
export function copyrightLines(text) {
  const lines = text.split('\n');
  const found = [];
  if (/^Format:\s*\S/.test(lines[0] ?? '')) {
    for (let i = 0; i < lines.length; i++) {
      const field = /^Copyright:\s*(.*)$/i.exec(lines[i]);
      if (field === null) continue;
      if (field[1].trim() !== '') found.push(field[1].trim());
      while (i + 1 < lines.length && /^\s+\S/.test(lines[i + 1]) && lines[i + 1].trim() !== '.') found.push(lines[++i].trim());
    }
  } else {
    for (const line of lines) {
      const trimmed = line.trim();
      if (trimmed.length <= 200 && isCopyrightLine(trimmed)) found.push(trimmed);
    }
  }
  return [...new Set(found)];
}

/** SPDX ids in a licence expression ("(MIT OR Apache-2.0)" -> MIT, Apache-2.0). */
function licenceIds(expression) {
  return (expression ?? '').split(/[\s()]+/).filter((word) => word !== '' && !/^(?:AND|OR|WITH)$/.test(word));
}

/** Standard licence texts: the built-in ones, else /usr/share/common-licenses (links followed; same text once). */
class StandardTexts {
  #dir;
  /** name -> { name, text, from } */
  #used = new Map();

  constructor(dir) {
    this.#dir = dir;
  }

  /** Whether `name` has a standard text here. */
  has(name) {
    return Object.hasOwn(STANDARD_TEXTS, name) || (/^[A-Za-z0-9][A-Za-z0-9.+_-]*$/.test(name) && existsSync(path.join(this.#dir, name)));
  }

  /** Marks `name` as printed; the name it is printed under (a link's target, so GPL and GPL-3 print once). */
  use(name) {
    if (Object.hasOwn(STANDARD_TEXTS, name)) {
      if (!this.#used.has(name)) this.#used.set(name, { name, text: STANDARD_TEXTS[name], from: 'the SPDX License List; the copyright holders are those named in the entries that refer to it' });
      return name;
    }
    const file = realpathSync(path.join(this.#dir, name));
    const shown = path.basename(file);
    if (!this.#used.has(shown)) this.#used.set(shown, { name: shown, text: readText(file), from: `${path.join(COMMON_LICENCES, shown)} (Debian base-files)` });
    return shown;
  }

  /** The texts used, sorted by name. */
  used() {
    return [...this.#used.values()].sort((a, b) => compare(a.name, b.name));
  }
}

/** The licence files of a package: [{ name, file }], sorted. */
function licenceFiles(entry, root) {
  if (entry.type === 'deb') return existsSync(entry.copyright) ? [{ name: entry.copyright, file: entry.copyright }] : [];
  const dir = path.resolve(root, entry.dir);
  return readdirSync(dir)
    .filter((name) => NPM_LICENCE_FILE.test(name) && statSync(path.join(dir, name)).isFile())
    .sort(compare)
    .map((name) => ({ name: `${entry.dir.replace(/\/$/, '')}/${name}`, file: path.join(dir, name) }));
}

/** Sort key of a package: npm before Debian, then name, then version. */
function packageOrder(a, b) {
  return compare(a.type === 'npm' ? 0 : 1, b.type === 'npm' ? 0 : 1) || compare(a.name, b.name) || compare(a.version, b.version);
}

function indent(lines, prefix = '  ') {
  return lines.map((line) => (line === '' ? '' : prefix + line));
}

/**
 * The text of NOTICES. `shards`: [{ shard, jsonl }], each shipped shard with the JSONL file it
 * was tokenised from; `packagesFile`: build-corpus's packages.json; `endOfText`: { id, text };
 * `root`: what the npm folders in packages.json are relative to; `commonLicences`: the folder of
 * standard texts. Returns { text, packages, shards }.
 */
export function buildNotices({ shards, packagesFile, endOfText, root = ROOT, commonLicences = COMMON_LICENCES }) {
  const manifest = JSON.parse(readFileSync(packagesFile, 'utf8'));
  if (manifest.format !== 'monosemantic-corpus-packages' || manifest.version !== 1) throw new Error(`${packagesFile}: not a packages.json of build-corpus.mjs`);
  const known = new Map(manifest.packages.map((entry) => [entry.id, entry]));

  /** package id -> { shard name -> documents } */
  const counts = new Map();
  const shardSummaries = [];
  for (const { shard, jsonl } of shards) {
    const name = path.basename(shard);
    const { documents, tokens, sha256 } = shardDocuments(shard, jsonl, endOfText);
    shardSummaries.push({ name, documents: documents.length, tokens, sha256 });
    for (const document of documents) {
      if (typeof document.package !== 'string') throw new Error(`${jsonl}:${document.line}: no "package" field (rebuild it with scripts/corpus/build-corpus.mjs)`);
      if (!known.has(document.package)) throw new Error(`${jsonl}:${document.line}: package ${document.package} is not in ${packagesFile}`);
      const perShard = counts.get(document.package) ?? {};
      perShard[name] = (perShard[name] ?? 0) + 1;
      counts.set(document.package, perShard);
    }
  }

  const standard = new StandardTexts(commonLicences);
  const printed = new Map(); // sha256 of a licence text -> the package it was printed under
  const entries = [];
  const chosen = [...counts.keys()].map((id) => known.get(id)).sort(packageOrder);
  for (const entry of chosen) {
    const perShard = counts.get(entry.id);
    const total = Object.values(perShard).reduce((sum, n) => sum + n, 0);
    const label = `${entry.type === 'npm' ? 'npm package' : 'Debian package'} ${entry.name} ${entry.version}`;
    const out = [THIN_RULE, label, THIN_RULE, ''];
    out.push(`Licence: ${entry.licence ?? '(none declared)'}`);
    out.push(`Documents in the shipped shards: ${total} (${shardSummaries.map(({ name }) => `${name} ${perShard[name] ?? 0}`).join(', ')})`);
    out.push(`From: ${entry.type === 'npm' ? entry.dir : `the Debian package ${entry.name}`}`);
    for (const note of entry.notes ?? []) out.push(`Note: ${note}`);

    const files = licenceFiles(entry, root).map((found) => ({ ...found, text: readText(found.file) }));
    const lines = files.flatMap(({ text }) => copyrightLines(text));
    const references = new Set();
    for (const { text } of files) {
      for (const match of text.matchAll(/\/usr\/share\/common-licenses\/([A-Za-z0-9][A-Za-z0-9.+_-]*[A-Za-z0-9+])/g)) {
        if (standard.has(match[1])) references.add(match[1]);
      }
    }
    if (files.length === 0) {
      const ids = licenceIds(entry.licence);
      const missing = ids.filter((id) => !standard.has(id));
      if (ids.length === 0 || missing.length > 0) {
        throw new Error(`${entry.id}: no licence file, and no standard text for its licence ${entry.licence ?? '(none)'}: add one to STANDARD_TEXTS or leave the package out`);
      }
      for (const id of ids) references.add(id);
    }

    out.push('', 'Copyright:');
    if (lines.length > 0) out.push(...indent(lines));
    else if (entry.author) out.push(`  (no copyright line in ${files.length === 0 ? 'the package' : 'its licence file'}; the author its package.json names: ${entry.author})`);
    else out.push(`  (no copyright line in ${files.length === 0 ? 'the package' : 'its licence file'})`);

    for (const { name, text } of files) {
      const hash = createHash('sha256').update(text).digest('hex');
      const earlier = printed.get(hash);
      if (earlier !== undefined) {
        out.push('', `Licence text: ${name}, the same text as the one printed for ${earlier} above.`);
      } else {
        printed.set(hash, label);
        out.push('', `Licence text: ${name}`, '', text);
      }
    }
    const shown = [...references].sort(compare).map((name) => standard.use(name));
    if (files.length === 0) {
      out.push('', `Licence text: the package has no licence file; its licence is the standard text of ${shown.join(', ')}, printed under "Standard licence texts" at the end${entry.author ? `, with the copyright holder above` : ''}.`);
    } else if (shown.length > 0) {
      out.push('', `Standard licence texts the text above refers to (printed under "Standard licence texts" at the end): ${[...new Set(shown)].join(', ')}.`);
    }
    entries.push(out.join('\n'));
  }

  const standardTexts = standard.used();
  const header = [
    'NOTICES for the default corpus of monosemantic (corpus/)',
    '',
    'The shipped token shards are lossless encodings of the documents they hold, so they are copies',
    'of them. These are the copyright notices and licence texts of every package that has a document',
    'in a shipped shard, as its licence asks (see SOURCES.md for the sources and their licences;',
    'written by scripts/corpus/build-notices.mjs from the build\u2019s record of each document\u2019s package).',
    '',
    ...shardSummaries.map(({ name, documents, tokens, sha256 }) => `  ${name}: ${documents} documents, ${tokens} tokens, token SHA-256 ${sha256}`),
    '',
    `Packages: ${chosen.length} (${chosen.filter((entry) => entry.type === 'npm').length} npm, ${chosen.filter((entry) => entry.type === 'deb').length} Debian), in that order, each by name.`,
    `Standard licence texts at the end: ${standardTexts.length === 0 ? 'none' : standardTexts.map(({ name }) => name).join(', ')}.`,
    '',
  ].join('\n');
  const tail = standardTexts.map(({ name, text, from }) => [RULE, `Standard licence text: ${name}`, `From ${from}.`, RULE, '', text].join('\n'));
  const text = [header, ...entries, ...(tail.length > 0 ? [`${RULE}\nStandard licence texts\n${RULE}`, ...tail] : [])].join('\n\n') + '\n';
  return { text, packages: chosen.map((entry) => ({ ...entry, shipped: counts.get(entry.id) })), shards: shardSummaries, standardTexts: standardTexts.map(({ name }) => name) };
}

/** buildNotices, written to `out` through a temporary file. */
export async function writeNotices(options, out) {
  const result = buildNotices(options);
  await writeFile(`${out}.tmp-${process.pid}`, result.text);
  await rename(`${out}.tmp-${process.pid}`, out);
  return result;
}

/** The shipped shards of a build and the JSONL each was tokenised from. */
export function defaultShards(build, corpus = path.join(ROOT, 'corpus')) {
  return [
    { shard: path.join(corpus, 'val.tokens'), jsonl: path.join(build, 'val.jsonl') },
    { shard: path.join(corpus, 'train-sample.tokens'), jsonl: path.join(build, 'train.jsonl') },
  ];
}

function parseArgs(argv) {
  const options = {
    build: path.join(ROOT, 'corpus/build'),
    out: path.join(ROOT, 'corpus/NOTICES'),
    val: path.join(ROOT, 'corpus/val.tokens'),
    sample: path.join(ROOT, 'corpus/train-sample.tokens'),
    tokenizer: path.join(ROOT, 'corpus/tokenizer.json'),
  };
  const flags = { '--build': 'build', '--out': 'out', '--val': 'val', '--sample': 'sample', '--tokenizer': 'tokenizer' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = flags[argv[i]];
    if (key === undefined || argv[i + 1] === undefined) {
      throw new Error(`unknown or incomplete argument ${argv[i]} (usage: build-notices.mjs [--build DIR] [--out FILE] [--val SHARD] [--sample SHARD] [--tokenizer FILE])`);
    }
    options[key] = path.resolve(argv[i + 1]);
  }
  return options;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const result = await writeNotices(
    {
      shards: [
        { shard: options.val, jsonl: path.join(options.build, 'val.jsonl') },
        { shard: options.sample, jsonl: path.join(options.build, 'train.jsonl') },
      ],
      packagesFile: path.join(options.build, 'packages.json'),
      endOfText: endOfTextToken(options.tokenizer),
    },
    options.out,
  );
  process.stderr.write(
    `wrote ${path.relative(process.cwd(), options.out)}: ${result.packages.length} packages ` +
      `(${result.shards.map(({ name, documents }) => `${documents} documents of ${name}`).join(', ')}), ` +
      `${Buffer.byteLength(result.text)} bytes, standard texts: ${result.standardTexts.join(', ') || 'none'}\n`,
  );
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    process.stderr.write(`build-notices: ${error.message}\n`);
    process.exitCode = 1;
  });
}
