/**
 * The harvested-activation stream: positions per context, mixing across contexts (provenance),
 * exact reproduction from a seed and from a saved position across windows and epochs, with and
 * without harvesting the next window ahead. A fake harvest writes each row's provenance (context
 * serial, position) into its values.
 */
import { afterAll, describe, expect, it } from 'vitest';

import { type ContextSource, LmActivationSource, type LmActivationOptions } from '../../lib/data/lm-activations.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { Tensor } from '../../lib/tensor.js';
import path from 'node:path';
import { packageRoot } from '../../lib/native/load.js';

const backend = 'cpu' as const;
const T = 12;

/** `total` contexts; context k holds k at position 1 (its provenance), other tokens arbitrary. */
function contextSource(total: number): (state: unknown, pass?: number) => Promise<ContextSource> {
  return async (state) => {
    let served = (state as number | undefined) ?? 0;
    return {
      async next(count) {
        const n = Math.min(count, total - served);
        if (n <= 0) return null;
        const ids = new Int32Array(n * T);
        for (let c = 0; c < n; c++) {
          for (let t = 0; t < T; t++) ids[c * T + t] = t === 1 ? served + c : (7 * t + c) % 50;
        }
        served += n;
        return ids;
      },
      state: () => served,
    };
  };
}

const W = 32; // the width of blocks.0.hook_resid_post in the fixture model

/** Activations [count·T, W]: columns 0 and 1 hold (context serial, position) for every row. */
async function provenanceHarvest(ids: Int32Array, count: number): Promise<Tensor> {
  const out = new Float32Array(count * T * W);
  for (let c = 0; c < count; c++) {
    for (let t = 0; t < T; t++) {
      out[(c * T + t) * W] = ids[c * T + 1]!;
      out[(c * T + t) * W + 1] = t;
    }
  }
  return Tensor.from(out, [count * T, W], { backend });
}

let model: Gpt2Model;
afterAll(() => model?.dispose());
async function open(extra: Partial<LmActivationOptions> = {}): Promise<LmActivationSource> {
  model ??= await Gpt2Model.load(path.join(packageRoot(), 'test/fixtures/gpt2/tiny-relu-untied'), { backend });
  return LmActivationSource.open({
    model,
    hook: 'blocks.0.hook_resid_post',
    openContexts: contextSource(70),
    contextLength: T,
    seed: 5,
    positionsPerContext: 4,
    contextsPerWindow: 32,
    forwardBatch: 5,
    harvest: provenanceHarvest,
    ...extra,
  });
}

/** The next `rows` rows' provenance, [rows, 2] flattened. */
async function take(source: LmActivationSource, rows: number): Promise<Float32Array> {
  using out = Tensor.empty([rows, W], { backend });
  await source.next(rows, out);
  const all = out.toArray() as Float32Array;
  return Float32Array.from({ length: rows * 2 }, (_, i) => all[Math.floor(i / 2) * W + (i % 2)]!);
}

describe('LmActivationSource', () => {
  it('serves each window’s chosen positions once, skipping position 0, mixed across contexts', async () => {
    const source = await open();
    const rows = await take(source, 128); // exactly one window: 32 contexts × 4 positions
    const seen = new Map<number, Set<number>>();
    for (let r = 0; r < 128; r++) {
      const [ctx, pos] = [rows[r * 2]!, rows[r * 2 + 1]!];
      expect(pos).toBeGreaterThanOrEqual(1);
      expect(pos).toBeLessThan(T);
      if (!seen.has(ctx)) seen.set(ctx, new Set());
      seen.get(ctx)!.add(pos);
    }
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i));
    for (const positions of seen.values()) expect(positions.size).toBe(4);
    // Provenance: a batch of 32 rows from the next window touches many contexts, none dominates.
    const batch = await take(source, 32);
    const counts = new Map<number, number>();
    for (let r = 0; r < 32; r++) counts.set(batch[r * 2]!, (counts.get(batch[r * 2]!) ?? 0) + 1);
    expect(counts.size).toBeGreaterThanOrEqual(14); // expected ≈ 20 of 32 contexts
    expect(Math.max(...counts.values())).toBeLessThanOrEqual(4);
    await source.close();
  });

  it('is reproducible from the seed and resumes exactly across windows and epochs', async () => {
    const sizes = [37, 64, 101, 90, 13, 128, 77];
    const whole = await open();
    const all: number[] = [];
    for (const n of sizes) all.push(...(await take(whole, n)));
    const again = await open();
    const repeat: number[] = [];
    for (const n of sizes) repeat.push(...(await take(again, n)));
    expect(repeat).toEqual(all);
    const other = await open({ seed: 6 });
    expect(Array.from(await take(other, 37))).not.toEqual(all.slice(0, 74));

    const first = await open();
    const head: number[] = [];
    for (const n of sizes.slice(0, 3)) head.push(...(await take(first, n)));
    const state = JSON.parse(JSON.stringify(first.state()));
    const resumed = await open({ state });
    const tail: number[] = [];
    for (const n of sizes.slice(3)) tail.push(...(await take(resumed, n)));
    expect([...head, ...tail]).toEqual(all);
    // 70 contexts in windows of 32: windows 0, 1 (32 each) and 2 (6) make an epoch; the stream went past it.
    expect(whole.state().epoch).toBe(1);
    for (const s of [whole, again, other, first, resumed]) await s.close();
  });

  it('opens each pass over the contexts with its pass number, also on resume; a position saved without it opens every pass as 0', async () => {
    const opened: number[] = [];
    const contexts = contextSource(70);
    const openContexts = (state: unknown, pass: number) => {
      opened.push(pass);
      return contexts(state);
    };
    // 70 contexts × 4 positions = 280 rows a pass: 700 rows reach the third pass.
    const source = await open({ openContexts, prefetch: false });
    await take(source, 700);
    const state = source.state();
    await source.close();
    expect(opened).toEqual([0, 1, 2]);
    expect(state).toMatchObject({ epoch: 2, passes: true });
    opened.length = 0;
    const resumed = await open({ openContexts, prefetch: false, state });
    await resumed.close();
    expect(opened).toEqual([2]);
    opened.length = 0;
    const { passes: _, ...legacy } = state;
    const old = await open({ openContexts, prefetch: false, state: legacy });
    await take(old, 300);
    expect(old.state().passes).toBeUndefined();
    await old.close();
    expect(opened).toEqual([0, 0]);
  });

  it('harvests the next window while this one is served, without changing the stream', async () => {
    const seen: number[] = []; // the first context serial of each harvest call
    const recording = (ids: Int32Array, count: number) => {
      seen.push(ids[1]!);
      return provenanceHarvest(ids, count);
    };
    const settle = () => new Promise((resolve) => setTimeout(resolve, 50));
    const ahead = await open({ harvest: recording });
    await settle();
    // Window 0 is contexts 0..31 in forward batches of 5; window 1 (from context 32) is already harvested.
    expect(seen).toContain(32);
    expect(seen).toContain(62); // its last forward batch: contexts 62, 63
    const lazy = await open({ prefetch: false, harvest: recording });
    seen.length = 0;
    await settle();
    expect(seen).toEqual([]);
    const sizes = [37, 64, 101, 90, 13, 128, 77];
    for (const n of sizes) expect(await take(ahead, n)).toEqual(await take(lazy, n));
    expect(ahead.state()).toEqual(lazy.state());
    // A state saved while the next window is in flight resumes the same stream.
    const state = JSON.parse(JSON.stringify(ahead.state()));
    const resumed = await open({ state, prefetch: false });
    for (const n of [50, 200]) expect(await take(resumed, n)).toEqual(await take(ahead, n));
    for (const s of [ahead, lazy, resumed]) await s.close();
  });

  it('reports a failed harvest of the next window when that window is needed, and still closes', async () => {
    const failing = async (ids: Int32Array, count: number) => {
      if (ids[1]! >= 32) throw new Error('the disk went away');
      return provenanceHarvest(ids, count);
    };
    const source = await open({ harvest: failing });
    await take(source, 100); // window 0 still serves
    await expect(take(source, 100)).rejects.toThrow(/the disk went away/);
    await source.close();
  });

  it('rejects a harvest of the wrong shape before gathering its rows', async () => {
    const short = async (ids: Int32Array, count: number) => Tensor.zeros([count * T - 1, W], { backend });
    await expect(open({ harvest: short })).rejects.toThrow(/must be \[\d+, 32\] \(got \[\d+, 32\]\)/);
  });

  describe('with the first pass stored', () => {
    const PASS = 70 * 4; // 70 contexts × 4 positions

    /** (context, position) keys of `rows` provenance pairs. */
    const keys = (rows: Float32Array | number[]) => Array.from({ length: rows.length / 2 }, (_, r) => `${rows[2 * r]}:${rows[2 * r + 1]}`);

    it('serves the first pass as the plain stream does, then every stored row once per pass without harvesting again', async () => {
      let calls = 0;
      const counting = (ids: Int32Array, count: number) => {
        calls++;
        return provenanceHarvest(ids, count);
      };
      const stored = await open({ storeRows: PASS, harvest: counting });
      const plain = await open();
      const first = await take(stored, PASS);
      expect(first).toEqual(await take(plain, PASS));
      const firstPassCalls = calls;
      expect(firstPassCalls).toBe(7 + 7 + 2); // forward batches of 5: windows of 32, 32 and 6 contexts
      const passes = [await take(stored, PASS), await take(stored, PASS)];
      await new Promise((resolve) => setTimeout(resolve, 20)); // let a prefetch run, were there one
      expect(calls).toBe(firstPassCalls);
      const firstKeys = keys(first).sort();
      for (const pass of passes) {
        expect(keys(pass).sort()).toEqual(firstKeys);
        expect(keys(pass)).not.toEqual(keys(first));
      }
      expect(keys(passes[1]!)).not.toEqual(keys(passes[0]!));
      expect(stored.state()).toMatchObject({ epoch: 2, offset: PASS, stored: true, contexts: null });
      // A pass from the store mixes all windows: its first 40 rows come from both halves of the corpus.
      const early = passes[0]!.filter((_, i) => i % 2 === 0 && i < 80);
      expect(early.some((c) => c < 32)).toBe(true);
      expect(early.some((c) => c >= 32)).toBe(true);
      // The plain stream harvests again and draws new windows: its second pass differs from the stored one.
      expect(keys(await take(plain, PASS))).not.toEqual(keys(passes[0]!));
      for (const s of [stored, plain]) await s.close();
    });

    it('serves the first stored pass in the order drawn ahead, the one drawn at the switch to the store', async () => {
      // storeRows = PASS: the first pass fills the store, and its serving order was drawn while it
      // was harvested; PASS + 3: it does not, and the order is drawn at the switch. Same n, same seed.
      const exact = await open({ storeRows: PASS });
      const roomy = await open({ storeRows: PASS + 3 });
      for (let pass = 0; pass < 3; pass++) expect(Array.from(await take(exact, PASS))).toEqual(Array.from(await take(roomy, PASS)));
      for (const s of [exact, roomy]) await s.close();
    });

    it('resumes exactly from positions in the first pass and in later passes', async () => {
      const sizes = [37, 64, 101, 90, 13, 128, 77, 250, 199, 33];
      for (const [storeRows, prefetch] of [[PASS + 3, true], [PASS + 3, false], [PASS, true]] as const) {
        const whole = await open({ storeRows, prefetch });
        const all: number[][] = [];
        for (const n of sizes) all.push(Array.from(await take(whole, n)));
        for (const cut of [2, 5, 8]) {
          const first = await open({ storeRows, prefetch });
          for (const n of sizes.slice(0, cut)) await take(first, n);
          const state = JSON.parse(JSON.stringify(first.state()));
          const resumed = await open({ storeRows, prefetch: !prefetch, state });
          for (let i = cut; i < sizes.length; i++) expect(Array.from(await take(resumed, sizes[i]!))).toEqual(all[i]);
          for (const s of [first, resumed]) await s.close();
        }
        expect(whole.state().epoch).toBe(3); // 992 rows: passes 0-2 and part of 3
        await whole.close();
      }
    });

    it('refuses a first pass larger than the store, and a saved position of the other kind', async () => {
      const small = await open({ storeRows: 200 });
      await expect(take(small, PASS)).rejects.toThrow(/more than the 200 rows kept for it \(storeRows\)/);
      await small.close();
      const plain = await open();
      await take(plain, 50);
      await expect(open({ storeRows: PASS, state: plain.state() })).rejects.toThrow(/does not keep its first pass/);
      const stored = await open({ storeRows: PASS });
      await take(stored, 50);
      await expect(open({ state: stored.state() })).rejects.toThrow(/keeps its first pass/);
      // A saved position that the corpus no longer reaches.
      const far = { ...stored.state(), window: 9, epoch: 0 };
      await expect(open({ storeRows: PASS, state: far })).rejects.toThrow(/does not match the stream harvested again/);
      for (const s of [plain, stored]) await s.close();
    });
  });

  it('harvests a real model’s hook by default (values equal a direct capture)', async () => {
    model ??= await Gpt2Model.load(path.join(packageRoot(), 'test/fixtures/gpt2/tiny-relu-untied'), { backend });
    const opener = contextSource(4);
    const source = await LmActivationSource.open({ model, hook: 'blocks.0.mlp.hook_post', openContexts: opener, contextLength: T, seed: 1, positionsPerContext: T - 1, contextsPerWindow: 4 });
    expect(source.d).toBe(128);
    using out = Tensor.empty([4 * (T - 1), 128], { backend });
    await source.next(4 * (T - 1), out);
    const ids = (await (await opener(undefined)).next(4))!;
    const { captured } = await model.forward(ids, 4, { capture: ['blocks.0.mlp.hook_post'] });
    using direct = captured['blocks.0.mlp.hook_post']!;
    const d = direct.toArray() as Float32Array;
    const served = out.toArray() as Float32Array;
    // Every served row is one of the captured rows of positions 1..T-1 (and they are all served).
    const key = (a: Float32Array, r: number) => Array.from(a.subarray(r * 128, r * 128 + 8)).join(',');
    const expected = new Set<string>();
    for (let c = 0; c < 4; c++) for (let t = 1; t < T; t++) expected.add(key(d, c * T + t));
    const got = new Set<string>();
    for (let r = 0; r < 4 * (T - 1); r++) got.add(key(served, r));
    expect(got).toEqual(expected);
    await source.close();
  });
});
