// Shared by the browser's pages: loading the data scripts written beside them (pages opened from
// disk cannot fetch JSON, so each data file has a .js twin that fills window.MONOSEMANTIC), and
// small DOM helpers. Token text is always set with textContent, never parsed as HTML.
'use strict';

window.MONOSEMANTIC = window.MONOSEMANTIC || {};

function loadData(src, key) {
  return new Promise((resolve, reject) => {
    if (key in window.MONOSEMANTIC) return resolve(window.MONOSEMANTIC[key]);
    const script = document.createElement('script');
    script.src = src;
    script.onload = () => (key in window.MONOSEMANTIC ? resolve(window.MONOSEMANTIC[key]) : reject(new Error(`${src} did not define ${key}`)));
    script.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.appendChild(script);
  });
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k === 'style') node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// A token's text made visible: newlines and tabs as symbols, spaces kept.
function showToken(text) {
  return text.replace(/\n/g, '⏎').replace(/\t/g, '⇥').replace(/\r/g, '␍');
}

// A statistic to three decimals, or "n/a" where there is none (JSON writes NaN as null).
function fixed3(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(3) : 'n/a';
}

// The smallest and largest of many numbers (spreading them into Math.min overflows the stack past ~100k).
function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

function formatDensity(p) {
  return p === 0 ? 'dead' : `${(Math.log10(p)).toFixed(2)}`;
}

function fail(error) {
  console.error(error);
  const message = el('p', { class: 'error' }, `Could not show this page: ${error.message}`);
  const title = document.querySelector('h1');
  if (title) title.after(message); // where it is seen, above the page's (empty) sections
  else document.body.prepend(message);
}

// Side-by-side histogram bars of several series over the same bins: [{ name, counts, color }].
function groupedBars(series, binLabels) {
  const max = Math.max(1, ...series.flatMap((s) => s.counts));
  const bars = el('div', { class: 'bars' });
  binLabels.forEach((label, b) => {
    for (const s of series) bars.append(el('div', { style: `height:${(100 * s.counts[b]) / max}%; background:${s.color}`, title: `${s.name} ${label}: ${s.counts[b]}` }));
  });
  return bars;
}

// The cycles a feature takes part in, as "#a → #b → #a" lines linking each feature.
function cycleLine(cycle) {
  const line = el('div', { class: 'context' }, el('span', { class: 'act' }, cycle.strength.toFixed(3)));
  [...cycle.features, cycle.features[0]].forEach((f, i) => {
    if (i > 0) line.append(' → ');
    line.append(el('a', { href: `feature.html#${f}` }, `#${f}`));
  });
  return line;
}
