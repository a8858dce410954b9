/**
 * Condenses V8 CPU profiles (`node --cpu-prof`) into one table each: the functions with the most
 * self time (file and line), their share of the profile, and the idle and garbage-collector time.
 * Where CUDA operations are queued from the JavaScript thread, their launch cost shows as the self
 * time of the function that calls the addon. node writes one profile per thread (the main thread,
 * worker threads); each table is headed by its file's name, which holds the thread's id
 * (CPU.<date>.<time>.<pid>.<thread>.<sequence>.cpuprofile; thread 0 is the main thread).
 *
 *   node dist/bench/cpuprofile-top.js CPU.….cpuprofile [more.cpuprofile …] [--top 25]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { Command } from 'commander';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const program = new Command('cpuprofile-top')
  .argument('<files...>', '.cpuprofile files written by node --cpu-prof')
  .option('--top <n>', 'rows to print per profile', '25')
  .parse();
const top = Number(program.opts<{ top: string }>().top);
if (!Number.isSafeInteger(top) || top < 1) throw new RangeError(`--top: a positive integer, got '${program.opts<{ top: string }>().top}'`);

/** The profile's table: self time per function, largest first. */
function table(file: string): string[] {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  if (!Array.isArray(profile.nodes) || !Array.isArray(profile.samples) || !Array.isArray(profile.timeDeltas)) {
    throw new TypeError(`${file} is not a V8 CPU profile (nodes, samples, timeDeltas)`);
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<string, number>();
  let totalUs = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)?.callFrame;
    const dt = profile.timeDeltas[i] ?? 0;
    totalUs += dt;
    if (!frame) return;
    // Line numbers are 0-based in the profile.
    const where = frame.url ? `${path.basename(frame.url)}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
  });
  return [
    `${path.basename(file)}: ${(totalUs / 1000).toFixed(0)} ms profiled`,
    '| function | self ms | share |',
    '| --- | ---: | ---: |',
    ...[...selfUs]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => `| ${key} | ${(us / 1000).toFixed(1)} | ${((100 * us) / totalUs).toFixed(1)}% |`),
  ];
}

console.log(program.args.map((file) => table(file).join('\n')).join('\n\n'));
