// One feature's page (feature.html#N): its statistics, top and sampled contexts with tokens shaded
// by activation, activation histogram, logit weights and nearest features.
'use strict';

function contextView(example, vocab, max) {
  const line = el('div', { class: 'context' }, el('span', { class: 'act' }, example.activation.toPrecision(3)));
  example.tokens.forEach((id, i) => {
    const a = example.activations[i];
    const alpha = max > 0 ? Math.min(1, Math.max(0, a / max)) : 0;
    const tok = el('span', { class: `tok${i === example.at ? ' example' : ''}`, style: `background: rgba(255, 120, 0, ${alpha.toFixed(3)})`, title: `activation ${a}` }, showToken(vocab[id] ?? `#${id}`));
    line.append(tok);
  });
  return line;
}

async function main() {
  const index = await loadData('data/features.js', 'features');
  const vocab = await loadData('data/vocab.js', 'vocab');
  const hash = location.hash.slice(1);
  const n = /^\d+$/.test(hash) ? Number(hash) : -1;
  if (n < 0 || n >= index.dSae) throw new Error(hash === '' ? `no feature named: open feature.html#N, N in [0, ${index.dSae})` : `no feature ${hash} (this SAE has ${index.dSae})`);
  const first = Math.floor(n / index.featuresPerFile) * index.featuresPerFile;
  const chunk = await loadData(`data/features/${String(first).padStart(6, '0')}.js`, `features-${first}`);
  const f = chunk[n - first];
  const nav = document.getElementById('nav');
  if (n > 0) nav.append(' · ', el('a', { href: `feature.html#${n - 1}` }, `← #${n - 1}`));
  if (n + 1 < index.dSae) nav.append(' · ', el('a', { href: `feature.html#${n + 1}` }, `#${n + 1} →`));
  document.title = `monosemantic: feature ${n}`;
  document.getElementById('title').textContent = `Feature ${n}`;
  document.getElementById('facts').textContent =
    f.fires === 0 ? `never fired on ${index.tokens.toLocaleString('en-US')} tokens (dead)` : `fires on ${f.fires.toLocaleString('en-US')} of ${index.tokens.toLocaleString('en-US')} tokens (log10 density ${formatDensity(f.density)}); max activation ${f.maxActivation.toPrecision(4)}, mean when firing ${f.meanActivation.toPrecision(4)}`;

  const top = document.getElementById('top');
  if (f.top.length === 0) top.append(el('p', { class: 'facts' }, 'no activations'));
  for (const e of f.top) top.append(contextView(e, vocab, f.maxActivation));
  const samples = document.getElementById('samples');
  for (const e of f.samples) samples.append(contextView(e, vocab, f.maxActivation));

  const h = index.histogram;
  const labels = f.histogram.map((_, b) => `[${(h.log10Min + b / h.binsPerDecade).toFixed(2)}, ${(h.log10Min + (b + 1) / h.binsPerDecade).toFixed(2)})`);
  const maxCount = Math.max(1, ...f.histogram);
  const bars = el('div', { class: 'bars' });
  f.histogram.forEach((v, b) => bars.append(el('div', { style: `height:${(100 * v) / maxCount}%`, title: `${labels[b]}: ${v}` })));
  document.getElementById('histogram').append(bars, el('div', { class: 'axis' }, el('span', {}, `1e${h.log10Min}`), el('span', {}, `1e${h.log10Min + f.histogram.length / h.binsPerDecade}`)));

  const logits = document.getElementById('logits');
  if (!f.logitWeights) logits.append(el('p', { class: 'facts' }, 'not computed for this hook'));
  else {
    const table = el('table', {}, el('tr', {}, el('th', {}, 'promoted'), el('th', {}, ''), el('th', {}, 'suppressed'), el('th', {}, '')));
    f.logitWeights.top.forEach(([id, w], i) => {
      const [bid, bw] = f.logitWeights.bottom[i];
      table.append(el('tr', {}, el('td', {}, el('span', { class: 'chip' }, showToken(vocab[id] ?? `#${id}`))), el('td', { class: 'num' }, w.toFixed(3)), el('td', {}, el('span', { class: 'chip' }, showToken(vocab[bid] ?? `#${bid}`))), el('td', { class: 'num' }, bw.toFixed(3))));
    });
    logits.append(table);
  }
  const comparisons = await loadData('data/compare.js', 'compare');
  const match = document.getElementById('match');
  for (const compare of comparisons) {
    if (compare.features.bestMatch[n] < 0) continue;
    const j = compare.features.bestMatch[n];
    const corr = compare.features.correlation[n];
    const extra = compare.decoderCosine ? `; nearest decoder direction #${compare.decoderCosine.bestMatch[n]} (cosine ${compare.decoderCosine.cosine[n].toFixed(3)})` : '';
    const logits = compare.logitWeights && compare.logitWeights.correlation[n] !== null ? `, logit-weight correlation ${compare.logitWeights.correlation[n].toFixed(3)}` : '';
    if (!match.firstChild) match.append(el('h2', {}, 'Best matches in other SAEs'));
    match.append(el('p', {}, `${compare.saeB} (model ${compare.modelB}): #${j}, activation correlation ${corr.toFixed(3)}${logits}${extra}`));
  }
  const automata = await loadData('data/automata.js', 'automata');
  const mine = automata ? automata.cycles.filter((c) => c.features.includes(n)) : [];
  if (mine.length) {
    const section = document.getElementById('cycles');
    section.append(el('h2', {}, 'Automata it belongs to'));
    for (const c of mine) section.append(cycleLine(c));
  }
  const neighbors = document.getElementById('neighbors');
  for (const [j, cos] of f.neighbors) neighbors.append(el('span', { class: 'chip' }, el('a', { href: `feature.html#${j}` }, `#${j}`), ` ${cos.toFixed(3)}`));
}

window.addEventListener('hashchange', () => location.reload());
main().catch(fail);
