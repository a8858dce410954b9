/**
 * Training curves as a standalone SVG: panels stacked vertically, one line per series, drawn by
 * compiling a Vega-Lite spec and rendering it with Vega's headless SVG renderer, so it works
 * offline and without a canvas. writeTrainingCurves draws a run's metrics log.
 */
import path from 'node:path';

import type { TopLevelSpec } from 'vega-lite';

import { writeFileAtomic } from '../io/atomic.js';
import { makeFolder } from '../io/folders.js';
import { readMetrics, type MetricsRecord } from '../sae/metrics-log.js';

export interface CurveSeries {
  name: string;
  points: { x: number; y: number }[];
}

export interface CurvePanel {
  /** The y axis title. */
  yLabel: string;
  series: CurveSeries[];
  /** Log-scale y axis; points with y <= 0 are then left out. */
  logY?: boolean;
  /** A linear y axis that starts at 0 (a fraction, say); else it spans the values. */
  zeroY?: boolean;
}

export interface CurvesOptions {
  title: string;
  /** The x axis title, shown under the bottom panel. */
  xLabel: string;
  panels: CurvePanel[];
  /** Width of each panel's plot area in pixels. Default 640. */
  width?: number;
  /** Height of each panel's plot area in pixels. Default 180. */
  height?: number;
}

/** Series longer than this are thinned to this many points, evenly by index. */
export const MAX_POINTS_PER_SERIES = 2000;

/**
 * An SVG document of the panels. Points with a non-finite (or null) x or y are skipped; a panel
 * left with no points says so in place of its chart.
 */
export async function renderCurvesSvg(options: CurvesOptions): Promise<string> {
  const { title, xLabel, panels, width = 640, height = 180 } = options;
  if (typeof title !== 'string') throw new TypeError('renderCurvesSvg: title must be a string');
  if (typeof xLabel !== 'string') throw new TypeError('renderCurvesSvg: xLabel must be a string');
  if (!Array.isArray(panels) || panels.length === 0) {
    throw new RangeError('renderCurvesSvg: panels must be a non-empty array');
  }
  for (const [name, value] of [['width', width], ['height', height]] as const) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new RangeError(`renderCurvesSvg: ${name} must be a positive number (got ${String(value)})`);
    }
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, anchor: 'start', fontSize: 15 },
    background: 'white',
    padding: 12,
    vconcat: panels.map((panel, i) => panelSpec(panel, i === panels.length - 1 ? xLabel : null, width, height)),
    spacing: 16,
    resolve: { scale: { x: 'shared', color: 'independent' }, legend: { color: 'independent' } },
    config: { axis: { titleFontSize: 12, labelFontSize: 11, grid: true, gridOpacity: 0.5 }, legend: { labelFontSize: 11 } },
  };
  // Loaded when a chart is first drawn, not with the library: vega takes over half a second to load,
  // and a dependency of it awaits at its top level, which would keep require('monosemantic') from working.
  const [{ parse, View }, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new View(parse(compile(spec as TopLevelSpec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Draws the metrics log at metricsPath to an SVG at svgPath (replaced atomically), x = step:
 * loss and mse on a log scale, L0 (key 'l0' or 'L0'), and the dead-feature fraction (key
 * 'deadFraction') when the log has it. A log with nothing to draw is a RangeError.
 */
export async function writeTrainingCurves(metricsPath: string, svgPath: string, options: { title?: string } = {}): Promise<void> {
  if (typeof svgPath !== 'string' || svgPath === '') throw new TypeError('writeTrainingCurves: svgPath must be a non-empty string');
  const records = await readMetrics(metricsPath);
  if (records.length === 0) {
    throw new RangeError(`writeTrainingCurves: metricsPath ${metricsPath} holds no metrics records`);
  }
  const l0Key = records.some((record) => typeof record.l0 === 'number') ? 'l0' : 'L0';
  const candidates: CurvePanel[] = [
    { yLabel: 'loss', logY: true, series: [seriesOf(records, 'loss'), seriesOf(records, 'mse')] },
    // L0 falls from about half the dictionary to a few features: a log axis shows both ends.
    { yLabel: 'L0 (active features per input)', logY: true, series: [seriesOf(records, l0Key, 'L0')] },
    { yLabel: 'dead-feature fraction', zeroY: true, series: [seriesOf(records, 'deadFraction', 'dead fraction')] },
  ];
  const panels = candidates
    .map((panel) => ({ ...panel, series: panel.series.filter((series) => series.points.length > 0) }))
    .filter((panel) => panel.series.length > 0);
  if (panels.length === 0) {
    throw new RangeError(`writeTrainingCurves: metricsPath ${metricsPath} has no finite loss, mse, l0 or deadFraction values`);
  }
  const svg = await renderCurvesSvg({
    title: options.title ?? `training curves: ${path.basename(metricsPath)}`,
    xLabel: 'step',
    panels,
  });
  await makeFolder(path.dirname(svgPath));
  await writeFileAtomic(svgPath, svg);
}

/** The Vega-Lite spec of one panel; xTitle null leaves the x axis untitled. */
function panelSpec(panel: CurvePanel, xTitle: string | null, width: number, height: number): object {
  const logY = panel.logY === true;
  const values: { x: number; y: number; series: string }[] = [];
  for (const series of panel.series) {
    const usable = series.points.filter(
      (point) => isFiniteNumber(point.x) && isFiniteNumber(point.y) && (!logY || point.y > 0),
    );
    for (const point of thin(usable, MAX_POINTS_PER_SERIES)) values.push({ x: point.x, y: point.y, series: series.name });
  }
  if (values.length === 0) {
    return {
      width,
      height,
      data: { values: [{}] },
      mark: { type: 'text', text: `${panel.yLabel}: no data`, fontSize: 14, color: '#666' },
      view: { stroke: '#ccc' },
    };
  }
  const names = panel.series.map((series) => series.name);
  return {
    width,
    height,
    data: { values },
    // Points too, only for short series, so that a series of one logged step still shows (a point
    // mark is one SVG element per value: thousands of them would make the file hundreds of kB).
    mark: { type: 'line', strokeWidth: 1.5, clip: true, point: values.length > 2 * panel.series.length ? false : { size: 30 } },
    encoding: {
      // The scales keep a few pixels clear at each end, so no line ends on the frame (and a single
      // step or a constant series gets a domain around it, not an empty one).
      x: { field: 'x', type: 'quantitative', title: xTitle, scale: { padding: 6 }, axis: { format: '~s', tickMinStep: 1 } },
      y: {
        field: 'y',
        type: 'quantitative',
        title: panel.yLabel,
        scale: logY
          ? { type: 'log', nice: false, padding: 6 }
          : panel.zeroY === true && values.every((v) => v.y === 0)
            ? { domain: [0, 1] } // all zero (no dead features): the line on the axis of a [0, 1] scale
            : { zero: panel.zeroY === true, padding: 6 },
        axis: { format: '~g' },
      },
      color: {
        field: 'series',
        type: 'nominal',
        sort: names,
        title: null,
        legend: names.length > 1 ? { orient: 'top-right', fillColor: 'white' } : null,
      },
    },
  };
}

/** At most `max` points, evenly spaced by index, keeping the first and the last. */
function thin<T>(points: T[], max: number): T[] {
  if (points.length <= max) return points;
  const kept: T[] = [];
  for (let i = 0; i < max; i++) kept.push(points[Math.round((i * (points.length - 1)) / (max - 1))]!);
  return kept;
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/** The (step, record[key]) points of a log, skipping records where key is not a finite number. */
function seriesOf(records: MetricsRecord[], key: string, name = key): CurveSeries {
  const points: { x: number; y: number }[] = [];
  for (const record of records) {
    const value = record[key];
    if (isFiniteNumber(value)) points.push({ x: record.step, y: value });
  }
  return { name, points };
}
