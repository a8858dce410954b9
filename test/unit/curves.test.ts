/** Training curves rendered to SVG headlessly, from synthetic series and from a metrics log. */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { renderCurvesSvg, writeTrainingCurves } from '../../lib/analysis/curves.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'curves-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A decaying, noisy-looking loss over `steps` steps (deterministic). */
function lossCurve(steps: number, scale: number): { x: number; y: number }[] {
  return Array.from({ length: steps }, (_, i) => ({ x: i, y: scale * (0.02 + Math.exp(-i / 300)) * (1 + 0.1 * Math.sin(i * 1.7)) }));
}

/** How many vertices the line paths of an SVG have in all. */
function lineVertices(svg: string): number {
  const paths = [...svg.matchAll(/class="mark-line role-mark[^"]*"[^>]*>(.*?)<\/g>/g)].map((m) => m[1]!);
  return paths.join('').split(/[ML]/).length - 1;
}

describe('renderCurvesSvg', () => {
  it('renders an SVG with the title, the axis titles and a legend for several series', async () => {
    const svg = await renderCurvesSvg({
      title: 'synthetic run',
      xLabel: 'step',
      panels: [
        { yLabel: 'loss', logY: true, series: [{ name: 'loss', points: lossCurve(500, 1) }, { name: 'mse', points: lossCurve(500, 0.8) }] },
        { yLabel: 'L0', series: [{ name: 'L0', points: lossCurve(500, 100) }] },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('</svg>');
    for (const text of ['synthetic run', '>step<', '>loss<', '>L0<', '>mse<']) expect(svg).toContain(text);
    expect(svg).toContain('mark-line');
  });

  it('skips non-finite and null points, and points at or below 0 on a log axis', async () => {
    const points = [
      { x: 0, y: 1 },
      { x: 1, y: Number.NaN },
      { x: 2, y: null as unknown as number },
      { x: 3, y: 0 },
      { x: Number.POSITIVE_INFINITY, y: 1 },
      { x: 5, y: 0.5 },
    ];
    const svg = await renderCurvesSvg({ title: 't', xLabel: 'step', panels: [{ yLabel: 'loss', logY: true, series: [{ name: 'loss', points }] }] });
    expect(lineVertices(svg)).toBe(2);
  });

  it('draws at most about 2000 points per series', async () => {
    const svg = await renderCurvesSvg({ title: 't', xLabel: 'step', panels: [{ yLabel: 'y', series: [{ name: 'y', points: lossCurve(50_000, 1) }] }] });
    const vertices = lineVertices(svg);
    expect(vertices).toBeGreaterThan(1000);
    expect(vertices).toBeLessThanOrEqual(2000);
    // One SVG element for the line, none per point: the whole file stays small.
    expect(svg.split('role="graphics-symbol"').length - 1).toBeLessThan(10);
    expect(svg.length).toBeLessThan(100_000);
  });

  it('says so in a panel with no points to draw', async () => {
    const svg = await renderCurvesSvg({
      title: 't',
      xLabel: 'step',
      panels: [
        { yLabel: 'loss', series: [{ name: 'loss', points: lossCurve(10, 1) }] },
        { yLabel: 'dead fraction', series: [{ name: 'dead', points: [{ x: 1, y: Number.NaN }] }] },
      ],
    });
    expect(svg).toContain('dead fraction: no data');
  });

  it('rejects no panels and a bad size', async () => {
    await expect(renderCurvesSvg({ title: 't', xLabel: 'x', panels: [] })).rejects.toThrow(/panels/);
    await expect(renderCurvesSvg({ title: 't', xLabel: 'x', panels: [{ yLabel: 'y', series: [] }], width: 0 })).rejects.toThrow(/width/);
  });
});

describe('writeTrainingCurves', () => {
  it('draws loss, mse, L0 and the dead fraction from a metrics log', async () => {
    const metrics = path.join(dir, 'metrics.jsonl');
    const lines: string[] = [];
    for (let step = 1; step <= 1000; step++) {
      const mse = 0.05 + Math.exp(-step / 150);
      const deadFraction = step % 100 === 0 ? Math.min(0.3, step / 3000) : null;
      lines.push(JSON.stringify({ step, samples: step * 4096, loss: mse * 1.2, mse, l0: 20 + 500 * Math.exp(-step / 200), deadFraction }));
    }
    await writeFile(metrics, lines.join('\n') + '\n' + '{"step":1001,"sam'); // torn last line
    const svgPath = path.join(dir, 'out', 'curves.svg');
    await writeTrainingCurves(metrics, svgPath, { title: 'run 7' });
    const svg = await readFile(svgPath, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    for (const text of ['run 7', '>step<', '>loss<', '>mse<', 'L0 (active features per input)', 'dead-feature fraction']) {
      expect(svg).toContain(text);
    }
    expect(await readdir(path.join(dir, 'out'))).toEqual(['curves.svg']);
  });

  it('marks the points of a log too short for a line, and leaves them off a long one', async () => {
    const metrics = path.join(dir, 'short.jsonl');
    await writeFile(metrics, `${JSON.stringify({ step: 50, samples: 50 * 4096, loss: 3, mse: 2, l0: 900 })}\n`);
    const svgPath = path.join(dir, 'short.svg');
    await writeTrainingCurves(metrics, svgPath);
    // Vega draws a point of size 30 as a circle of radius √30 / 2 = 2.739 (legend symbols: radius 5).
    const points = (svg: string) => svg.split(/d="M2\.739,0A/).length - 1;
    expect(points(await readFile(svgPath, 'utf8'))).toBe(3); // loss, mse, L0
    const long = Array.from({ length: 20 }, (_, k) => JSON.stringify({ step: 50 * (k + 1), samples: 50 * (k + 1) * 4096, loss: 3 / (k + 1), mse: 2 / (k + 1), l0: 900 / (k + 1) }));
    await writeFile(metrics, `${long.join('\n')}\n`);
    await writeTrainingCurves(metrics, svgPath);
    expect(points(await readFile(svgPath, 'utf8'))).toBe(0);
  });

  it('leaves out the dead-fraction panel when the log has no such values', async () => {
    const metrics = path.join(dir, 'metrics.jsonl');
    await writeFile(metrics, [1, 2, 3].map((step) => JSON.stringify({ step, samples: step, loss: 1 / step, l0: 5 })).join('\n') + '\n');
    const svgPath = path.join(dir, 'curves.svg');
    await writeTrainingCurves(metrics, svgPath);
    const svg = await readFile(svgPath, 'utf8');
    expect(svg).toContain('training curves: metrics.jsonl');
    expect(svg).not.toContain('dead-feature fraction');
  });

  it('is a RangeError naming the file when the log holds no records, and writes nothing', async () => {
    const metrics = path.join(dir, 'metrics.jsonl');
    await writeFile(metrics, '');
    const svgPath = path.join(dir, 'curves.svg');
    await expect(writeTrainingCurves(metrics, svgPath)).rejects.toThrow(RangeError);
    await expect(writeTrainingCurves(metrics, svgPath)).rejects.toThrow(/metrics\.jsonl holds no metrics records/);
    await writeFile(metrics, JSON.stringify({ step: 1, samples: 1, loss: null }) + '\n');
    await expect(writeTrainingCurves(metrics, svgPath)).rejects.toThrow(/no finite loss/);
    expect(await readdir(dir)).toEqual(['metrics.jsonl']);
  });
});
