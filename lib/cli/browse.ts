/**
 * `monosemantic browse`: writes the static feature browser — the pages in the package's browser/
 * folder plus the feature report as data (lib/analysis/feature-report.ts) and, with --run, the
 * run's summary and curves, and optionally `compare` and `automata` results — to a folder whose
 * index.html opens from disk. `--serve` also serves it over local HTTP.
 */
import { copyFile, readFile, readdir, realpath } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import path from 'node:path';

import type { Command } from 'commander';

import { writeDataFile, writeFeatureReport } from '../analysis/feature-report.js';
import { readContexts } from '../data/corpus-contexts.js';
import { makeFolder } from '../io/folders.js';
import { Gpt2Model } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { modelDirOf } from '../lm/default-model.js';
import { packageRoot } from '../native/load.js';
import { loadSaeLensAsSae } from '../sae/saelens.js';
import { positiveIntegerFlag } from './flags.js';
import { SAE_MODEL_HELP, analysisContextLength, saeModelDir } from './sae-model.js';
import { contextProgress } from './progress.js';

interface BrowseFlags {
  sae?: string;
  run?: string;
  model?: string;
  hook?: string;
  data?: string[];
  contexts?: string;
  textField: string;
  contextLength?: string;
  out: string;
  compare?: string[];
  automata?: string;
  serve?: string | true;
  backend?: 'cpu' | 'cuda';
  progress?: boolean;
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.svg': 'image/svg+xml' };

/**
 * Serves `dir` on 127.0.0.1:port until closed; resolves once the port is taken, with the port and
 * the server. Only requests addressed to this machine by name or number are answered (a page
 * elsewhere that rebinds its own host name to 127.0.0.1 cannot read the site), and a malformed
 * path is a 400, never an exception.
 */
export function serveFolder(dir: string, port: number): Promise<{ port: number; server: Server }> {
  const root = path.resolve(dir);
  let bound = port;
  const server = createServer(async (req, res) => {
    const host = (req.headers.host ?? '').toLowerCase();
    if (![`127.0.0.1:${bound}`, `localhost:${bound}`].includes(host)) {
      res.writeHead(421).end('misdirected request');
      return;
    }
    let url: string;
    try {
      url = decodeURIComponent((req.url ?? '/').split('?')[0]!);
    } catch {
      res.writeHead(400).end('bad request');
      return;
    }
    const file = path.resolve(root, `.${url === '/' ? '/index.html' : url}`);
    if (!file.startsWith(root + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      bound = (server.address() as { port: number }).port;
      resolve({ port: bound, server });
    });
  });
}

type ResultKind = 'compare' | 'automata';

/** Which command's --out result `value` is, told by its fields; null for neither. */
function resultKind(value: unknown): ResultKind | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (typeof v['saeA'] === 'string' && Array.isArray((v['features'] as Record<string, unknown> | undefined)?.['bestMatch'])) return 'compare';
  if (typeof v['sae'] === 'string' && Array.isArray(v['cycles']) && Array.isArray(v['edges'])) return 'automata';
  return null;
}

/**
 * Reads the `kind` result `file` (given as `flag`) for the SAE in `saeDir` with `dSae` features.
 * Refuses a result of the other kind, one made for an SAE of another size, and one whose SAE
 * folder still exists and is not `saeDir`: its pages would describe another SAE's features. (A
 * result whose SAE folder has since moved is matched on the size alone.)
 */
async function readResult(flag: string, file: string, kind: ResultKind, saeDir: string, dSae: number): Promise<unknown> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new RangeError(`${flag} ${file}: ${(error as Error).message}`);
  }
  const found = resultKind(value);
  if (found !== kind) {
    const holds = found ? `holds a \`monosemantic ${found}\` result` : 'holds neither a `monosemantic compare` nor a `monosemantic automata` result';
    throw new RangeError(`${flag} ${file}: ${holds}; ${flag} takes the file \`monosemantic ${kind} --out\` writes`);
  }
  // compare records its first SAE as saeA, with a best match per feature; automata its SAE as sae, with dSae.
  const made = value as { saeA?: string; sae?: string; dSae?: unknown; features?: { bestMatch: unknown[] } };
  const madeFor = kind === 'compare' ? made.saeA! : made.sae!;
  const size = kind === 'compare' ? made.features!.bestMatch.length : made.dSae;
  if (typeof size === 'number' && size !== dSae) throw new RangeError(`${flag} ${file}: made for ${madeFor} (${size} features), not ${saeDir} (${dSae} features)`);
  const [recorded, given] = await Promise.all([realpath(madeFor).catch(() => null), realpath(saeDir)]);
  if (recorded !== null && recorded !== given) throw new RangeError(`${flag} ${file}: made for ${madeFor}, not ${saeDir}`);
  return value;
}

/** --serve's port: 8080 when the flag has no value; a RangeError unless an integer in [0, 65535]. */
function servePort(value: string | true): number {
  if (value === true) return 8080;
  const port = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!(port <= 65535)) throw new RangeError(`--serve must be a port number in [0, 65535] (got ${JSON.stringify(value)})`);
  return port;
}


/** The run's summary.json (null when there is none: an interrupted run); a damaged one names the file. */
async function readRunSummary(runDir: string): Promise<unknown> {
  const file = path.join(runDir, 'summary.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new RangeError(`--run: ${file} cannot be read (${(error as Error).message})`, { cause: error });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new RangeError(`--run: ${file} is not valid JSON (${(error as Error).message}); it is the run's summary, written when the run finishes`, { cause: error });
  }
}
export function registerBrowse(program: Command): void {
  program
    .command('browse')
    .description('write the static feature browser for an SAE (open OUT/index.html, or --serve)')
    .option('--sae <dir>', 'SAELens folder (default: RUN/sae with --run)')
    .option('--run <dir>', 'a `monosemantic run` folder: its SAE, summary and curves')
    .option('--model <dir>', SAE_MODEL_HELP, modelDirOf)
    .option('--hook <name>', "hook the SAE reads (default: the SAE's cfg.json hook name)")
    .option('--data <paths...>', 'token shards or text the statistics are taken over (default: corpus/val.tokens)')
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--context-length <n>', 'tokens per context (default: the SAE’s context size, capped at the model’s n_positions)')
    .option('--contexts <n>', 'contexts read (default: all)')
    .requiredOption('-o, --out <dir>', 'output folder')
    .option('--compare <files...>', '`monosemantic compare --out` results (this SAE as --sae-a): universality plot, splitting map, best matches')
    .option('--automata <file>', 'a `monosemantic automata --out` result: the cycles and each feature’s part in them')
    .option('--serve [port]', 'serve the folder on 127.0.0.1 (default port 8080)')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .option('--no-progress', 'no progress bar')
    .action(async (flags: BrowseFlags) => {
      const saeDir = flags.sae ?? (flags.run ? path.join(flags.run, 'sae') : undefined);
      if (!saeDir) throw new RangeError('give --sae DIR or --run DIR');
      if (flags.run && flags.sae && (await realpath(flags.sae).catch(() => path.resolve(flags.sae!))) !== (await realpath(path.join(flags.run, 'sae')).catch(() => null))) {
        throw new RangeError(`--sae ${flags.sae} is not the SAE of --run ${flags.run} (${path.join(flags.run, 'sae')}): the run's overview would describe another SAE; give one of them`);
      }
      const port = flags.serve === undefined ? null : servePort(flags.serve);
      const { sae, loaded } = await loadSaeLensAsSae(saeDir, flags.backend ? { backend: flags.backend } : {});
      let serving: { port: number; server: Server } | null = null;
      try {
        // The results shown beside the features are checked before the (long) statistics pass.
        const comparisons = await Promise.all((flags.compare ?? []).map((file) => readResult('--compare', file, 'compare', saeDir, sae.dSae)));
        const automata = flags.automata ? await readResult('--automata', flags.automata, 'automata', saeDir, sae.dSae) : null;
        const summary = flags.run ? await readRunSummary(flags.run) : null; // checked before the long pass
        const hook = flags.hook ?? loaded.metadata.hookName;
        if (!hook) throw new RangeError(`${saeDir} names no hook in its cfg.json; pass --hook NAME`);
        const modelDir = saeModelDir(saeDir, loaded.metadata.modelName, flags.model);
        const tokenizer = await Tokenizer.load(modelDir);
        using model = await Gpt2Model.load(modelDir, { backend: sae.backend });
        const T = analysisContextLength(flags.contextLength, loaded.metadata.contextSize, model.config.nPositions);
        const paths = flags.data ?? [path.join(packageRoot(), 'corpus', 'val.tokens')];
        const limit = flags.contexts !== undefined ? positiveIntegerFlag('--contexts', flags.contexts) : Number.MAX_SAFE_INTEGER;
        const contexts = await readContexts({ paths, textField: flags.textField, tokenizer, contextLength: T, seed: 0 }, limit);
        const dataDir = path.join(flags.out, 'data');
        await makeFolder(dataDir);
        // The port is taken before the (long) statistics pass; requests meanwhile find nothing yet.
        serving = port === null ? null : await serveFolder(flags.out, port);
        const progress = contextProgress('browse', contexts.length / T, flags.progress);
        const facts = await writeFeatureReport({ model, modelDir, tokenizer, sae, saeDir, hook, contexts, T, onProgress: (done) => progress.update(done, {}) }, dataDir).finally(
          () => progress.stop(), // a failed pass too: the bar's timer would keep the process alive
        );
        const pages = path.join(packageRoot(), 'browser');
        for (const name of await readdir(pages)) await copyFile(path.join(pages, name), path.join(flags.out, name));
        let run: unknown = null; // the overview's data: null without --run
        if (flags.run) {
          let curves: string | null = null;
          try {
            await copyFile(path.join(flags.run, 'curves.svg'), path.join(dataDir, 'curves.svg'));
            curves = 'data/curves.svg';
          } catch {
            // a run without curves (interrupted): the overview shows the summary alone
          }
          run = { dir: path.resolve(flags.run), summary, curves };
        }
        await writeDataFile(dataDir, 'run', 'run', run);
        await writeDataFile(dataDir, 'compare', 'compare', comparisons);
        await writeDataFile(dataDir, 'automata', 'automata', automata);
        process.stdout.write(`feature browser for ${facts.dSae} features (${facts.tokens.toLocaleString('en-US')} tokens) written to ${flags.out}: open ${path.join(path.resolve(flags.out), 'index.html')}\n`);
        if (serving !== null) {
          process.stdout.write(`serving on http://127.0.0.1:${serving.port}/ (Ctrl-C to stop)\n`);
          await new Promise(() => {});
        }
      } catch (error) {
        serving?.server.close(); // a failed pass does not keep the process alive
        throw error;
      } finally {
        sae.dispose();
      }
    });
}
