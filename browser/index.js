// The browser's index page: run overview, density histogram, and the searchable, sortable list of
// every feature (rendered a page of rows at a time, so 131,072 features stay fast).
'use strict';

const PAGE = 200;

function histogramBars(values, labels) {
  const max = Math.max(1, ...values);
  const bars = el('div', { class: 'bars' });
  values.forEach((v, i) => bars.append(el('div', { style: `height:${(100 * v) / max}%`, title: `${labels[i]}: ${v}` })));
  return bars;
}

function densityHistogram(features) {
  const bins = new Map();
  let dead = 0;
  for (const f of features) {
    if (f.density === 0) { dead += 1; continue; }
    const b = Math.floor(Math.log10(f.density) * 4);
    bins.set(b, (bins.get(b) || 0) + 1);
  }
  const keys = [...bins.keys()];
  const lo = keys.length ? Math.min(...keys) : -24;
  const hi = keys.length ? Math.max(...keys) : 0;
  const values = [];
  const labels = [];
  for (let b = lo; b <= hi; b++) { values.push(bins.get(b) || 0); labels.push(`[${(b / 4).toFixed(2)}, ${((b + 1) / 4).toFixed(2)})`); }
  return el('div', {}, histogramBars(values, labels), el('div', { class: 'axis' }, el('span', {}, (lo / 4).toFixed(2)), el('span', {}, ((hi + 1) / 4).toFixed(2))), el('p', { class: 'facts' }, `dead: ${dead}`));
}

function runOverview(run) {
  const section = document.getElementById('run');
  if (!run) return;
  section.append(el('h2', {}, 'Run'));
  const e = run.summary && run.summary.evaluation;
  if (e) {
    const pct = (x) => `${(100 * x).toFixed(1)}%`;
    const table = el('table', {});
    const tokens = e.rows.toLocaleString('en-US');
    section.append(el('p', { class: 'facts' }, `The run's own evaluation, on ${e.contexts} held-out contexts (${tokens} tokens); the density histogram and the feature list below are over the tokens named at the top.`));
    for (const [k, v] of [
      ['activations trained on', run.summary.samples.toLocaleString('en-US')],
      ['MSE / fraction of variance unexplained', `${e.mse.toPrecision(4)} / ${e.fvu.toFixed(4)}`],
      ['L0', e.l0.toFixed(1)],
      [`dead (no activation on the ${tokens} tokens) / ultra-low density`, `${e.dead} (${pct(e.dead / e.dSae)}) / ${e.rows > 1e6 ? e.ultraLow : 'n/a'}`],
      ['next-token loss clean / spliced / zero-ablated', `${e.loss.clean.toFixed(4)} / ${e.loss.spliced.toFixed(4)} / ${e.loss.zeroAblated.toFixed(4)}`],
      ['loss recovered', pct(e.loss.fractionRecovered)],
    ]) table.append(el('tr', {}, el('td', {}, k), el('td', { class: 'num' }, v)));
    section.append(table);
  }
  if (run.curves) section.append(el('p', {}, el('img', { class: 'curves', src: run.curves, alt: 'training curves' })));
}

function acrossSection(compare, k) {
  const section = document.getElementById('across');
  const bins = compare.features.histogram.map((_, b) => `[${(-1 + (2 * b) / compare.features.histogram.length).toFixed(1)}, ${(-1 + (2 * (b + 1)) / compare.features.histogram.length).toFixed(1)})`);
  if (compare.neurons) {
    section.append(
      el('h2', {}, 'Universality'),
      el('p', { class: 'facts' }, `For each feature of this SAE, the correlation of its activations with its best match among the features of ${compare.saeB} (model ${compare.modelB}), over ${compare.tokens.toLocaleString('en-US')} tokens: median ${fixed3(compare.features.median)} (blue). The same for the models' neurons: median ${fixed3(compare.neurons.median)} (grey).${compare.logitWeights ? ` Logit weights of matched features: median correlation ${fixed3(compare.logitWeights.median)}.` : ''}`),
      groupedBars([{ name: 'features', counts: compare.features.histogram, color: '#4a7bd0' }, { name: 'neurons', counts: compare.neurons.histogram, color: '#aaa' }], bins),
      el('div', { class: 'axis' }, el('span', {}, '−1'), el('span', {}, '0'), el('span', {}, '1')),
    );
  }
  if (compare.map) {
    const canvas = el('canvas', { width: '900', height: '600', id: `map-${k}`, class: 'map', style: 'border:1px solid #eee; max-width:100%' });
    section.append(
      el('h2', {}, `Feature map: ${compare.features.bestMatch.length} and ${compare.map.length - compare.features.bestMatch.length} features`),
      el('p', { class: 'facts' }, `UMAP of the decoder directions of this SAE (blue) and ${compare.saeB} (orange); ${compare.decoderCosine.linked} features of this SAE have a match at decoder cosine ≥ ${compare.decoderCosine.threshold}. Click a blue point to open its feature.`),
      canvas,
    );
    const [x0, x1] = extent(compare.map.map((p) => p.x));
    const [y0, y1] = extent(compare.map.map((p) => p.y));
    const px = (p) => [20 + ((p.x - x0) / (x1 - x0 || 1)) * 860, 20 + ((p.y - y0) / (y1 - y0 || 1)) * 560];
    const ctx = canvas.getContext('2d');
    for (const p of compare.map) {
      const [x, y] = px(p);
      ctx.fillStyle = p.dictionary === 0 ? 'rgba(74, 123, 208, 0.7)' : 'rgba(230, 120, 20, 0.6)';
      ctx.beginPath();
      ctx.arc(x, y, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    canvas.addEventListener('click', (event) => {
      const rect = canvas.getBoundingClientRect();
      const cx = ((event.clientX - rect.left) * canvas.width) / rect.width;
      const cy = ((event.clientY - rect.top) * canvas.height) / rect.height;
      let best = null;
      let bestD = 36;
      for (const p of compare.map) {
        if (p.dictionary !== 0) continue;
        const [x, y] = px(p);
        const d = (x - cx) ** 2 + (y - cy) ** 2;
        if (d < bestD) { bestD = d; best = p; }
      }
      if (best) location.href = `feature.html#${best.feature}`;
    });
  }
}

function automataSection(automata) {
  const section = document.getElementById('automata');
  if (!automata) return;
  section.append(el('h2', {}, 'Automata'), el('p', { class: 'facts' }, `Cycles of features in which each promotes the tokens the next fires on (strength: the weakest link), over ${automata.tokens.toLocaleString('en-US')} tokens.`));
  for (const cycle of automata.cycles) section.append(cycleLine(cycle));
}

async function main() {
  const [index, vocab] = await Promise.all([loadData('data/features.js', 'features'), loadData('data/vocab.js', 'vocab')]);
  const run = await loadData('data/run.js', 'run');
  document.getElementById('title').textContent = `${index.dSae.toLocaleString('en-US')} features of ${index.hook}`;
  document.getElementById('facts').textContent = `SAE ${index.sae} · model ${index.model} · statistics over ${index.tokens.toLocaleString('en-US')} tokens (${index.contexts} contexts of ${index.contextLength})`;
  runOverview(run);
  (await loadData('data/compare.js', 'compare')).forEach(acrossSection);
  automataSection(await loadData('data/automata.js', 'automata'));
  document.getElementById('density').append(densityHistogram(index.features));

  const text = (ids) => ids.map((id) => vocab[id]).join(' ');
  const rows = index.features.map((f) => ({ ...f, search: `${text(f.topTokens)} ${text(f.topLogitTokens)}`.toLowerCase() }));
  let sortKey = 'density';
  let ascending = false;
  let shown = PAGE;
  const tbody = document.querySelector('#list tbody');
  const search = document.getElementById('search');
  const more = document.getElementById('more');

  const chips = (ids) => el('span', {}, ...ids.map((id) => el('span', { class: 'chip' }, showToken(vocab[id] ?? `#${id}`))));
  function render() {
    const query = search.value.trim().toLowerCase();
    // A number finds that feature (listed first) and the features whose tokens hold it.
    const exact = /^\d+$/.test(query) ? Number(query) : -1;
    const filtered = query ? rows.filter((r) => r.index === exact || r.search.includes(query)) : rows;
    const value = (r) => (Array.isArray(r[sortKey]) ? r[sortKey].length : r[sortKey]);
    filtered.sort((a, b) => (b.index === exact) - (a.index === exact) || (ascending ? value(a) - value(b) : value(b) - value(a)) || a.index - b.index);
    tbody.replaceChildren(
      ...filtered.slice(0, shown).map((r) =>
        el('tr', {}, el('td', {}, el('a', { href: `feature.html#${r.index}` }, `#${r.index}`)), el('td', { class: 'num' }, formatDensity(r.density)), el('td', { class: 'num' }, r.maxActivation.toPrecision(3)), el('td', {}, chips(r.topTokens)), el('td', {}, chips(r.topLogitTokens))),
      ),
    );
    document.getElementById('shown').textContent = `${Math.min(shown, filtered.length)} of ${filtered.length} shown`;
    more.hidden = filtered.length <= shown;
    document.querySelectorAll('#list th').forEach((th) => {
      th.classList.toggle('sorted', th.dataset.key === sortKey);
      th.classList.toggle('asc', th.dataset.key === sortKey && ascending);
    });
  }
  document.querySelectorAll('#list th').forEach((th) =>
    th.addEventListener('click', () => {
      if (sortKey === th.dataset.key) ascending = !ascending;
      else { sortKey = th.dataset.key; ascending = sortKey === 'index'; }
      render();
    }),
  );
  search.addEventListener('input', () => { shown = PAGE; render(); });
  more.addEventListener('click', () => { shown += PAGE; render(); });
  render();
}

main().catch(fail);
