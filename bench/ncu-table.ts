/**
 * Condenses `ncu --metrics gpu__time_duration.sum --print-summary per-kernel` output (read from a
 * file or stdin) into one table: each kernel (its name without the argument list, with its launch
 * shape), invocations, mean and total µs, and its share of the summed device time; largest first.
 *
 *   node dist/bench/ncu-table.js ncu-output.txt [--top 25] [--runs N]
 *
 * --runs: how many times the profiled program ran the measured work (a bench's warm-up run counts:
 * `lm-forward.js --iters 1` runs 2 forwards); the device time is also given per run.
 */
import { readFileSync } from 'node:fs';

import { Command } from 'commander';

const program = new Command('ncu-table')
  .argument('[file]', 'ncu output (default: stdin)')
  .option('--top <n>', 'rows to print', '25')
  .option('--runs <n>', 'runs of the measured work in the profile (warm-up included)', '1')
  .parse();
const text = readFileSync(program.args[0] ?? 0, 'utf8');
const opts = program.opts<{ top: string; runs: string }>();
const top = Number(opts.top);
const runs = Number(opts.runs);
if (!Number.isSafeInteger(runs) || runs < 1) throw new RangeError(`--runs must be a positive integer (got ${opts.runs})`);

interface Row {
  kernel: string;
  calls: number;
  meanUs: number;
}

// A kernel's heading: `  name(args) (gx, gy, gz)x(bx, by, bz), Device 0, CC 9.0, Invocations N`;
// its time: `    gpu__time_duration.sum   us   min   max   mean` (or ms / ns).
const heading = /^\s+(.+?)\((?:[^()]|\([^()]*\))*\)\s+(\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)), Device \d+, CC [\d.]+, Invocations (\d+)\s*$/;
const timing = /^\s+gpu__time_duration\.sum\s+(ns|us|ms|s)\s+[\d.,]+\s+[\d.,]+\s+([\d.,]+)\s*$/;
const toUs = { ns: 1e-3, us: 1, ms: 1e3, s: 1e6 } as const;
const rows: Row[] = [];
let pending: { kernel: string; calls: number } | null = null;
for (const line of text.split('\n')) {
  const h = heading.exec(line);
  if (h) {
    pending = { kernel: `${h[1]!.replace(/^void /, '')} ${h[2]}`, calls: Number(h[3]) };
    continue;
  }
  const t = timing.exec(line);
  if (t && pending) {
    rows.push({ ...pending, meanUs: Number(t[2]!.replace(/,/g, '')) * toUs[t[1] as keyof typeof toUs] });
    pending = null;
  }
}
if (rows.length === 0) {
  console.log('no per-kernel gpu__time_duration summary found');
  process.exit(1);
}
const total = rows.reduce((sum, r) => sum + r.calls * r.meanUs, 0);
rows.sort((a, b) => b.calls * b.meanUs - a.calls * a.meanUs);
console.log(
  `device time, all kernels: ${(total / 1000).toFixed(2)} ms over ${rows.reduce((s, r) => s + r.calls, 0)} launches` +
    (runs > 1 ? ` (${runs} runs: ${(total / 1000 / runs).toFixed(2)} ms per run)` : ''),
);
console.log('| kernel (grid)x(block) | calls | mean µs | total µs | share |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const r of rows.slice(0, top)) {
  console.log(`| ${r.kernel} | ${r.calls} | ${r.meanUs.toFixed(1)} | ${(r.calls * r.meanUs).toFixed(0)} | ${((100 * r.calls * r.meanUs) / total).toFixed(1)}% |`);
}
