/** The JSONL metrics log: round trip, non-finite values, torn lines and truncation for resumed runs. */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { MetricsLog, readMetrics } from '../../lib/sae/metrics-log.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'metrics-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function line(step: number): string {
  return JSON.stringify({ step, samples: step * 32, loss: 1 / (step + 1) }) + '\n';
}

describe('MetricsLog', () => {
  it('writes what it was given once flushed, and reads it back in order', async () => {
    const file = path.join(dir, 'nested', 'metrics.jsonl');
    const log = await MetricsLog.open(file);
    log.append({ step: 1, samples: 32, loss: 0.5, phase: 'warmup', lr: null });
    log.append({ step: 2, samples: 64, loss: 0.25, phase: 'main', lr: 1e-4 });
    expect(await readFile(file, 'utf8')).toBe(''); // buffered until flush
    await log.flush();
    expect(await readMetrics(file)).toEqual([
      { step: 1, samples: 32, loss: 0.5, phase: 'warmup', lr: null },
      { step: 2, samples: 64, loss: 0.25, phase: 'main', lr: 1e-4 },
    ]);
    log.append({ step: 3, samples: 96, loss: 0.125 });
    await log.close();
    expect((await readMetrics(file)).map((record) => record.step)).toEqual([1, 2, 3]);
    expect(() => log.append({ step: 4, samples: 128 })).toThrow(/closed/);
  });

  it('stores NaN and infinities as null', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    const log = await MetricsLog.open(file);
    log.append({ step: 0, samples: 0, loss: Number.NaN, mse: Number.POSITIVE_INFINITY, l0: Number.NEGATIVE_INFINITY });
    await log.close();
    expect(await readFile(file, 'utf8')).toBe('{"step":0,"samples":0,"loss":null,"mse":null,"l0":null}\n');
    expect(await readMetrics(file)).toEqual([{ step: 0, samples: 0, loss: null, mse: null, l0: null }]);
  });

  it('appends to an existing log', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    await writeFile(file, line(1) + line(2));
    const log = await MetricsLog.open(file);
    log.append({ step: 3, samples: 96 });
    await log.close();
    expect((await readMetrics(file)).map((record) => record.step)).toEqual([1, 2, 3]);
  });

  it('rejects records without a valid step or samples, and values of other types', async () => {
    const log = await MetricsLog.open(path.join(dir, 'metrics.jsonl'));
    expect(() => log.append({ step: -1, samples: 0 })).toThrow(RangeError);
    expect(() => log.append({ step: 1.5, samples: 0 })).toThrow(/record\.step/);
    expect(() => log.append({ step: 1, samples: Number.NaN })).toThrow(/record\.samples/);
    expect(() => log.append({ step: 1, samples: 0, done: true } as never)).toThrow(TypeError);
    await log.close();
  });

  it('truncateAfterStep keeps only records up to that step and drops a torn last line', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    await writeFile(file, line(1) + line(2) + line(3) + line(4) + '{"step":5,"samp');
    const log = await MetricsLog.open(file, { truncateAfterStep: 2 });
    expect((await readMetrics(file)).map((record) => record.step)).toEqual([1, 2]);
    log.append({ step: 3, samples: 96, loss: 0.1 });
    log.append({ step: 4, samples: 128, loss: 0.05 });
    await log.close();
    const records = await readMetrics(file);
    expect(records.map((record) => record.step)).toEqual([1, 2, 3, 4]);
    expect(records[2]).toEqual({ step: 3, samples: 96, loss: 0.1 });
    expect((await readdir(dir)).sort()).toEqual(['metrics.jsonl']); // no temporary file left
  });

  it('truncateAfterStep drops lines that are not records, with a one-line warning, and keeps the valid ones', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    // NULs left by a crash, then lines a resumed run appended after them.
    await writeFile(file, line(1) + '\0\0\0\0\n' + line(2) + '[1,2]\n' + line(3) + '{"step":4,"samp');
    const warnings: string[] = [];
    const log = await MetricsLog.open(file, { truncateAfterStep: 2, warn: (message) => warnings.push(message) });
    expect(warnings).toEqual([`metrics log ${file}: dropping 2 lines (first: line 2) that are not metrics records: "\\u0000\\u0000\\u0000\\u0000"`]);
    log.append({ step: 3, samples: 96 });
    await log.close();
    expect((await readMetrics(file)).map((record) => record.step)).toEqual([1, 2, 3]);
    expect((await readdir(dir)).sort()).toEqual(['metrics.jsonl']); // rewritten in place, no temporary file left

    await writeFile(file, line(1) + 'garbage\n' + line(2));
    await (await MetricsLog.open(file, { truncateAfterStep: 2, warn: (message) => warnings.push(message) })).close();
    expect(warnings[1]).toBe(`metrics log ${file}: dropping line 2 that is not a metrics record: "garbage"`);
  });

  it('truncateAfterStep creates the log when there is none', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    const log = await MetricsLog.open(file, { truncateAfterStep: 100 });
    log.append({ step: 101, samples: 1 });
    await log.close();
    expect(await readMetrics(file)).toEqual([{ step: 101, samples: 1 }]);
  });

  it('starts appended lines on a line of their own after a torn write', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    await writeFile(file, line(1) + '{"step":2,"sam');
    const log = await MetricsLog.open(file);
    log.append({ step: 2, samples: 64 });
    await log.close();
    expect(await readFile(file, 'utf8')).toBe(line(1) + '{"step":2,"samples":64}\n');

    // A whole record that only lacks its newline is kept.
    await writeFile(file, line(1) + '{"step":2,"samples":64}');
    const again = await MetricsLog.open(file);
    again.append({ step: 3, samples: 96 });
    await again.close();
    expect((await readMetrics(file)).map((record) => record.step)).toEqual([1, 2, 3]);
  });

  it('keeps every record in order when the buffer is written out before flush', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    const log = await MetricsLog.open(file);
    const note = 'x'.repeat(200);
    for (let step = 0; step < 20_000; step++) log.append({ step, samples: step, note }); // about 4 MB
    await log.close();
    const steps = (await readMetrics(file)).map((record) => record.step);
    expect(steps).toHaveLength(20_000);
    expect(steps.every((step, i) => step === i)).toBe(true);
  });

  it('rejects a bad truncateAfterStep and an empty path', async () => {
    await expect(MetricsLog.open(path.join(dir, 'm.jsonl'), { truncateAfterStep: Number.NaN })).rejects.toThrow(/truncateAfterStep/);
    await expect(MetricsLog.open('')).rejects.toThrow(TypeError);
  });
});

describe('readMetrics', () => {
  it('skips a torn last line', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    await writeFile(file, line(1) + line(2) + '{"step":3,"samples":96,"lo');
    expect((await readMetrics(file)).map((record) => record.step)).toEqual([1, 2]);
  });

  it('reads an empty file as no records', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    await writeFile(file, '');
    expect(await readMetrics(file)).toEqual([]);
  });

  it('reports a bad line before the last with its line number', async () => {
    const file = path.join(dir, 'metrics.jsonl');
    await writeFile(file, line(1) + 'garbage\n' + line(3));
    await expect(readMetrics(file)).rejects.toThrow(/line 2/);
  });
});
