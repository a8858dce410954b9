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
    for (const [k, v] of [
      ['activations trained on', run.summary.samples.toLocaleString('en-US')],
      ['MSE / fraction of variance unexplained', `${e.mse.toPrecision(4)} / ${e.fvu.toFixed(4)}`],
      ['L0', e.l0.toFixed(1)],
      ['dead / ultra-low density', `${e.dead} (${pct(e.dead / e.dSae)}) / ${e.ultraLow}`],
      ['next-token loss clean / spliced / zero-ablated', `${e.loss.clean.toFixed(4)} / ${e.loss.spliced.toFixed(4)} / ${e.loss.zeroAblated.toFixed(4)}`],
      ['loss recovered', pct(e.loss.fractionRecovered)],
    ]) table.append(el('tr', {}, el('td', {}, k), el('td', { class: 'num' }, v)));
    section.append(table);
  }
  if (run.curves) section.append(el('p', {}, el('img', { class: 'curves', src: run.curves, alt: 'training curves' })));
}

async function main() {
  const [index, vocab] = await Promise.all([loadData('data/features.js', 'features'), loadData('data/vocab.js', 'vocab')]);
  const run = await loadData('data/run.js', 'run');
  document.getElementById('title').textContent = `${index.dSae.toLocaleString('en-US')} features of ${index.hook}`;
  document.getElementById('facts').textContent = `SAE ${index.sae} · model ${index.model} · statistics over ${index.tokens.toLocaleString('en-US')} tokens (${index.contexts} contexts of ${index.contextLength})`;
  runOverview(run);
  document.getElementById('density').append(densityHistogram(index.features));

  const text = (ids) => ids.map((id) => vocab[id]).join(' ');
  const rows = index.features.map((f) => ({ ...f, search: `${f.index} ${text(f.topTokens)} ${text(f.topLogitTokens)}`.toLowerCase() }));
  let sortKey = 'density';
  let ascending = false;
  let shown = PAGE;
  const tbody = document.querySelector('#list tbody');
  const search = document.getElementById('search');
  const more = document.getElementById('more');

  const chips = (ids) => el('span', {}, ...ids.map((id) => el('span', { class: 'chip' }, showToken(vocab[id] ?? `#${id}`))));
  function render() {
    const query = search.value.trim().toLowerCase();
    const filtered = query ? rows.filter((r) => (/^\d+$/.test(query) ? String(r.index) === query || r.search.includes(query) : r.search.includes(query))) : rows;
    const value = (r) => (Array.isArray(r[sortKey]) ? r[sortKey].length : r[sortKey]);
    filtered.sort((a, b) => (ascending ? value(a) - value(b) : value(b) - value(a)) || a.index - b.index);
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
