/**
 * The feature browser in a real headless browser (Debian's chromium, driven by playwright-core):
 * written by `monosemantic browse` for a fixture model and an SAE of 300 features (two data
 * chunks), opened from disk. Pages load without console errors, the list renders and search works,
 * a feature page shows its contexts, and corpus text that looks like HTML stays text. Screenshots
 * go to test/artifacts/. Skipped, saying so, where no chromium is installed.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';
import { saveSaeLens } from '../../lib/sae/saelens.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/run-fixtures.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
const artifacts = path.join(packageRoot(), 'test/artifacts');
const model = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');

describe.skipIf(!CHROMIUM)(`feature browser in headless chromium${CHROMIUM ? '' : ' (skipped: no chromium at /usr/bin; apt-get install chromium)'}`, () => {
  let out = '';
  let browser: import('playwright-core').Browser;
  let live = -1;

  beforeAll(async () => {
    const root = tempDir('browser');
    const d = 76; // the fixture's MLP width
    const n = 300;
    const rng = new Rng(3);
    const W_enc = rng.fillNormal(new Float32Array(d * n), 0.5);
    const W_dec = rng.fillNormal(new Float32Array(n * d), 0.1);
    await saveSaeLens(path.join(root, 'sae'), {
      dIn: d,
      dSae: n,
      params: { W_enc, W_dec, b_enc: new Float32Array(n).fill(-0.05), b_dec: new Float32Array(d) },
      metadata: { modelName: 'tiny', hookName: 'blocks.0.mlp.hook_post', contextSize: 24, datasetPath: null },
    });
    const text = Array.from({ length: 60 }, (_, i) => `<script>alert(${i})</script> <b>base64</b> QUJD${i} the cat sat\n`).join('');
    writeFileSync(path.join(root, 'corpus.txt'), text);
    out = path.join(root, 'site');
    const env = { MONOSEMANTIC_BACKEND: 'cpu' };
    const sae = path.join(root, 'sae');
    const corpus = path.join(root, 'corpus.txt');
    const compared = runCli(['compare', '--sae-a', sae, '--sae-b', sae, '--model-a', model, '--data', corpus, '--contexts', '20', '-o', path.join(root, 'compare.json')], env);
    expect(compared.status, compared.stderr).toBe(0);
    // The universality plot needs two models; give the self-comparison a neuron baseline to draw.
    const comparison = JSON.parse(readFileSync(path.join(root, 'compare.json'), 'utf8'));
    comparison.neurons = { median: 0.4, histogram: comparison.features.histogram.map((_: number, b: number) => (b > 10 ? 20 - b : 0)) };
    comparison.features.median = null; // as JSON writes the NaN median of an SAE none of whose features fire: shown as n/a
    writeFileSync(path.join(root, 'compare.json'), JSON.stringify(comparison));
    const automata = runCli(['automata', '--sae', sae, '--model', model, '--data', corpus, '--min-score', '0', '--min-count', '1', '-o', path.join(root, 'automata.json')], env);
    expect(automata.status, automata.stderr).toBe(0);
    const r = runCli(['browse', '--sae', sae, '--model', model, '--data', corpus, '--compare', path.join(root, 'compare.json'), '--automata', path.join(root, 'automata.json'), '-o', out], env);
    expect(r.status, r.stderr).toBe(0);
    const index = JSON.parse(readFileSync(path.join(out, 'data', 'features.json'), 'utf8'));
    live = index.features.filter((f: { index: number; density: number }) => f.index >= 256 && f.density > 0).sort((a: { density: number }, b: { density: number }) => b.density - a.density)[0].index;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM!, args: ['--no-sandbox', '--allow-file-access-from-files'] });
    mkdirSync(artifacts, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
  });

  async function open(page: string) {
    const p = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    p.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    p.on('pageerror', (e) => errors.push(e.message));
    p.on('dialog', (dialog) => {
      errors.push(`a dialog opened: ${dialog.message()}`);
      void dialog.dismiss();
    });
    const [file, hash] = page.split('#');
    await p.goto(pathToFileURL(path.join(out, file!)).href + (hash ? `#${hash}` : ''));
    return { p, errors };
  }

  it('the index lists every feature, sorts and searches, without console errors', async () => {
    const { p, errors } = await open('index.html');
    await p.waitForSelector('#list tbody tr');
    expect(await p.textContent('#title')).toBe('300 features of blocks.0.mlp.hook_post');
    expect(await p.textContent('#shown')).toBe('200 of 300 shown');
    // A number finds that feature first, then the features whose tokens hold the digits.
    await p.fill('#search', String(live));
    await p.waitForFunction(`document.querySelector('#shown').textContent !== '200 of 300 shown'`);
    expect(await p.textContent('#list tbody tr:first-child td:first-child')).toBe(`#${live}`);
    expect(await p.textContent('#across')).toContain('median n/a (blue)');
    await p.fill('#search', '');
    await p.click('th[data-key="index"]');
    expect(await p.textContent('#list tbody tr:first-child td:first-child')).toBe('#0');
    expect(await p.locator('#across .bars div').count()).toBe(2 * 20); // features and neurons, 20 bins
    expect(await p.locator('canvas.map').count()).toBe(1);
    expect(await p.locator('#automata .context').count()).toBeGreaterThan(0);
    await p.screenshot({ path: path.join(artifacts, 'browser-index.png'), fullPage: true });
    expect(errors).toEqual([]);
    await p.close();
  });

  it('a feature page (in the second data chunk) shows its top contexts as text', async () => {
    const { p, errors } = await open(`feature.html#${live}`);
    await p.waitForSelector('#top .context');
    expect(await p.textContent('#title')).toBe(`Feature ${live}`);
    expect(await p.locator('#top .context').count()).toBeGreaterThan(0);
    expect(await p.locator('#top .tok.example').count()).toBe(await p.locator('#top .context').count());
    expect(await p.locator('#neighbors .chip').count()).toBe(8);
    expect(await p.locator('#logits tr').count()).toBe(11); // header + 10
    expect(await p.locator('script:not([src])').count()).toBe(0); // corpus "<script>" stayed text
    expect(await p.textContent('#match')).toContain(`: #${live}, activation correlation 1.000`); // its own best match in the self-comparison
    const neighbours = [...(live > 0 ? [`← #${live - 1}`] : []), ...(live + 1 < 300 ? [`#${live + 1} →`] : [])];
    expect(await p.locator('#nav a').allTextContents()).toEqual(['← all features', ...neighbours]);
    await p.screenshot({ path: path.join(artifacts, 'browser-feature.png'), fullPage: true });
    expect(errors).toEqual([]);
    await p.close();
  });

  it('a feature that does not exist says so under the title', async () => {
    const { p, errors } = await open('feature.html#99999');
    await p.waitForSelector('.error');
    expect(await p.textContent('h1 + .error')).toBe('Could not show this page: no feature 99999 (this SAE has 300)');
    expect(errors).toEqual([expect.stringContaining('no feature 99999')]); // the page logs what it shows
    await p.close();
  });
});
