/**
 * `monosemantic compare` / `automata` results and `browse`, on the tiny fixture model: the output
 * file's folder is checked before the analysis, and browse takes only results of the right kind
 * made for the SAE it shows.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { packageRoot } from '../../lib/native/load.js';
import { saveSaeLens } from '../../lib/sae/saelens.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/run-fixtures.js';

const model = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');
const cli = (args: string[]) => runCli(args, { MONOSEMANTIC_BACKEND: 'cpu' });

/** An SAE of `dSae` features on the fixture's blocks.0.mlp.hook_post (76 wide), with weights from `seed`. */
async function saveSae(dir: string, dSae: number, seed: number): Promise<void> {
  const dIn = 76;
  let s = seed;
  const values = (n: number) => Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.5);
  await saveSaeLens(dir, {
    dIn,
    dSae,
    params: { W_enc: values(dIn * dSae), b_enc: new Float32Array(dSae), W_dec: values(dSae * dIn), b_dec: new Float32Array(dIn) },
    metadata: { modelName: 'tiny-gelu-new-tied', hookName: 'blocks.0.mlp.hook_post', contextSize: 24, datasetPath: null },
  });
}

let root: string;
let corpus: string;
const sae = (name: string) => path.join(root, name);

beforeAll(async () => {
  root = tempDir('cli-results');
  corpus = path.join(root, 'corpus.txt');
  writeFileSync(corpus, Array.from({ length: 60 }, (_, i) => `line ${i}: the cat sat on the mat, and x = ${i * 7}; def f(x): return x`).join('\n'));
  await saveSae(sae('a'), 24, 1);
  await saveSae(sae('b'), 32, 2);
  await saveSae(sae('a-twin'), 24, 3); // the size of a, another SAE
  writeFileSync(path.join(root, 'file'), 'a file where a folder is asked for');
});

describe('compare and automata --out', () => {
  it('refuse an output folder that cannot be made before the analysis', () => {
    // The data is missing too: the analysis would fail on it, so the output is checked first.
    const common = ['--data', path.join(root, 'missing.txt'), '-o', path.join(root, 'file', 'x.json')];
    for (const args of [['compare', '--sae-a', sae('a'), '--sae-b', sae('b'), '--model-a', model, ...common], ['automata', '--sae', sae('a'), '--model', model, ...common]]) {
      const r = cli(args);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`monosemantic: --out ${path.join(root, 'file', 'x.json')}: cannot write in ${path.join(root, 'file')} (a file stands where a folder is needed)\n`);
    }
    const folder = cli(['automata', '--sae', sae('a'), '--model', model, '--data', path.join(root, 'missing.txt'), '-o', root]);
    expect(folder.stderr).toBe(`monosemantic: --out ${root}: is a folder; name a file\n`);
  });

  it('create the output folder, and the results record the SAE they were made for', () => {
    const cmp = path.join(root, 'new', 'compare', 'ab.json');
    const c = cli(['compare', '--sae-a', sae('a'), '--sae-b', sae('b'), '--model-a', model, '--data', corpus, '--contexts', '4', '--no-map', '-o', cmp]);
    expect(c.status, c.stderr).toBe(0);
    expect(JSON.parse(readFileSync(cmp, 'utf8')).saeA).toBe(sae('a'));
    const auto = path.join(root, 'new', 'automata', 'a.json');
    const a = cli(['automata', '--sae', sae('a'), '--model', model, '--data', corpus, '--contexts', '4', '-o', auto]);
    expect(a.status, a.stderr).toBe(0);
    expect(JSON.parse(readFileSync(auto, 'utf8'))).toMatchObject({ sae: sae('a'), dSae: 24 });
  });
});

describe('browse --compare / --automata / --serve', () => {
  const cmp = () => path.join(root, 'new', 'compare', 'ab.json');
  const auto = () => path.join(root, 'new', 'automata', 'a.json');
  const browse = (saeDir: string, out: string, ...more: string[]) => cli(['browse', '--sae', saeDir, '--model', model, '--data', corpus, '--contexts', '2', '--no-progress', '-o', path.join(root, out), ...more]);

  it('refuses results of the other kind, or made for another SAE, before building the site', () => {
    const cases: [string[], string][] = [
      [['--compare', auto()], `--compare ${auto()}: holds a \`monosemantic automata\` result; --compare takes the file \`monosemantic compare --out\` writes`],
      [['--automata', cmp()], `--automata ${cmp()}: holds a \`monosemantic compare\` result; --automata takes the file \`monosemantic automata --out\` writes`],
      [['--compare', corpus], `--compare ${corpus}: Unexpected token`],
    ];
    for (const [flags, message] of cases) {
      const r = browse(sae('a'), 'refused', ...flags);
      expect(r.status).toBe(1);
      expect(r.stderr.startsWith(`monosemantic: ${message}`), r.stderr).toBe(true);
    }
    const other = browse(sae('b'), 'refused', '--compare', cmp());
    expect(other.stderr).toBe(`monosemantic: --compare ${cmp()}: made for ${sae('a')} (24 features), not ${sae('b')} (32 features)\n`);
    const twin = browse(sae('a-twin'), 'refused', '--automata', auto());
    expect(twin.stderr).toBe(`monosemantic: --automata ${auto()}: made for ${sae('a')}, not ${sae('a-twin')}\n`);
    expect(existsSync(path.join(root, 'refused'))).toBe(false);
  });

  it('shows results made for its SAE', () => {
    const r = browse(sae('a'), 'site', '--compare', cmp(), '--automata', auto());
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(path.join(root, 'site', 'data', 'compare.js'), 'utf8')).toContain(sae('b'));
  });

  it('checks the --serve port before building the site', () => {
    for (const port of ['abc', '99999']) {
      const r = browse(sae('a'), 'served', '--serve', port);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(`monosemantic: --serve must be a port number in [0, 65535] (got "${port}")\n`);
    }
    expect(existsSync(path.join(root, 'served'))).toBe(false);
  });
});
