/** The progress line: plain lines off a terminal, a redrawn bar on one, nothing when disabled, and its ETA. */
import { PassThrough } from 'node:stream';

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { createProgress, formatCompact, formatDuration, formatRate } from '../../lib/cli/progress.js';

/** Everything written to the stream so far. */
function written(stream: PassThrough): string {
  const chunk = stream.read() as Buffer | null;
  return chunk === null ? '' : chunk.toString('utf8');
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(0);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('createProgress without a TTY', () => {
  it('prints a plain line every twentieth of the total, the last one included, with no escape codes', () => {
    const stream = new PassThrough();
    const progress = createProgress({ total: 100, label: 'train', stream, enabled: true });
    for (let step = 1; step <= 100; step++) {
      vi.advanceTimersByTime(100);
      progress.update(step, { 'samples/s': 1234, loss: 1 / step });
    }
    progress.stop();
    const text = written(stream);
    expect(text).not.toMatch(/\x1b/);
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(20);
    expect(lines[0]).toBe('train 5% 5/100 steps | 1.234k samples/s | ETA 10s | loss 0.2');
    expect(lines[19]).toBe('train 100% 100/100 steps | 1.234k samples/s | elapsed 10s | loss 0.01');
  });

  it('prints every 30 s however slow the steps, and the final state on stop', () => {
    const stream = new PassThrough();
    const progress = createProgress({ total: 1000, stream, enabled: true });
    progress.update(1, { loss: 0.5 });
    expect(written(stream)).toBe('');
    vi.advanceTimersByTime(31_000);
    progress.update(2, { loss: 0.4 });
    // The window now holds steps 1 to 2, 31 s apart: 998 steps to go take 8h35m38s.
    expect(written(stream)).toBe('0% 2/1000 steps | ETA 8h35m | loss 0.4\n');
    progress.update(3, { loss: 0.3 });
    expect(written(stream)).toBe('');
    progress.stop();
    // 2 steps in 31 s: 997 to go take 4h17m34s.
    expect(written(stream)).toBe('0% 3/1000 steps | ETA 4h17m | loss 0.3\n');
    progress.update(4, { loss: 0.2 });
    progress.stop();
    expect(written(stream)).toBe('');
  });

  it('times a resumed run from where it resumed', () => {
    const stream = new PassThrough();
    const progress = createProgress({ total: 10_000, stream, enabled: true, initial: 5000 });
    vi.advanceTimersByTime(10_000);
    progress.update(5100, { L0: 12.3 });
    progress.stop();
    // 100 steps in 10 s: 4900 steps to go take 490 s.
    expect(written(stream)).toBe('51% 5100/10000 steps | ETA 8m10s | L0 12.3\n');
  });

  it('prints log lines as they are', () => {
    const stream = new PassThrough();
    const progress = createProgress({ total: 10, stream, enabled: true });
    progress.log('resumed from step 0');
    expect(written(stream)).toBe('resumed from step 0\n');
    progress.stop();
  });
});

describe('createProgress when disabled', () => {
  it('prints no progress, only log lines', () => {
    const stream = new PassThrough();
    const progress = createProgress({ total: 10, stream, enabled: false });
    for (let step = 1; step <= 10; step++) progress.update(step, { loss: 1 });
    progress.stop();
    expect(written(stream)).toBe('');
    progress.log('a message');
    expect(written(stream)).toBe('a message\n');
  });

  it('is disabled by default on a stream that is not a TTY', () => {
    const stream = new PassThrough();
    const progress = createProgress({ total: 10, stream });
    progress.update(10, {});
    progress.stop();
    expect(written(stream)).toBe('');
  });
});

describe('createProgress on a TTY', () => {
  it('draws a bar with the label, counts and fields, and logs above it', () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 200 });
    const progress = createProgress({ total: 10_000, label: 'train', stream });
    vi.advanceTimersByTime(1000);
    progress.update(4500, { 'samples/s': 1200, loss: 0.123, L0: 12.3 });
    vi.advanceTimersByTime(1000);
    progress.log('checkpoint saved');
    progress.stop();
    const text = written(stream);
    expect(text).toMatch(/\x1b/);
    expect(text).toContain('train |██████████████░░░░░░░░░░░░░░░░| 45% 4500/10000 steps | 1.2k samples/s | ETA 1s | loss 0.123 | L0 12.3');
    expect(text).toContain('checkpoint saved\n');
  });

  it('narrows the bar and cuts the line to fit the terminal', () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 40 });
    const progress = createProgress({ total: 10, label: 'train', stream });
    progress.update(5, { loss: 0.5, mse: 0.25 });
    progress.stop();
    const text = written(stream);
    expect(text).toContain('train |█████░░░░░| 50% 5/10 steps');
    for (const line of text.split(/\r|\n|\x1b\[\d*[A-Za-z]|\x1b[78]/)) expect(line.length).toBeLessThanOrEqual(40);
  });
});

describe('createProgress arguments', () => {
  it('rejects a bad total, initial and done', () => {
    expect(() => createProgress({ total: -1 })).toThrow(/total/);
    expect(() => createProgress({ total: 1.5 })).toThrow(RangeError);
    expect(() => createProgress({ total: 10, initial: Number.NaN })).toThrow(/initial/);
    const progress = createProgress({ total: 10, stream: new PassThrough(), enabled: true });
    expect(() => progress.update(Number.NaN, {})).toThrow(/done/);
  });
});

describe('number formats', () => {
  it('formatCompact keeps 4 significant digits', () => {
    expect(formatCompact(0)).toBe('0');
    expect(formatCompact(0.123456)).toBe('0.1235');
    expect(formatCompact(12.3)).toBe('12.3');
    expect(formatCompact(123456)).toBe('123500');
    expect(formatCompact(1.23456e-5)).toBe('1.235e-5');
    expect(formatCompact(2e7)).toBe('2e7');
    expect(formatCompact(Number.NaN)).toBe('NaN');
  });

  it('formatRate uses k, M and G', () => {
    expect(formatRate(950)).toBe('950');
    expect(formatRate(1200)).toBe('1.2k');
    expect(formatRate(999_960)).toBe('1M');
    expect(formatRate(3_456_789)).toBe('3.457M');
    expect(formatRate(2.5e9)).toBe('2.5G');
  });

  it('formatDuration', () => {
    expect(formatDuration(45.4)).toBe('45s');
    expect(formatDuration(192)).toBe('3m12s');
    expect(formatDuration(7500)).toBe('2h05m');
    expect(formatDuration(3 * 86_400 + 4 * 3600)).toBe('3d04h');
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe('--');
  });
});

it('names what it counts', () => {
  const lines: string[] = [];
  const stream = { write: (s: string) => (lines.push(s), true) } as unknown as NodeJS.WritableStream;
  const p = createProgress({ total: 40, label: 'eval', unit: 'contexts', stream, enabled: true });
  p.update(40);
  p.stop();
  expect(lines.join('')).toMatch(/eval .*40\/40 contexts/);
});
