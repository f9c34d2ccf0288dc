// jointops dashboard: the charts, drawn as inline SVG (by force, with each
// force's joint credit hatched; by day).
import { LABEL, approx, formatMeasure, formatWithUnit, intStr } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
function svgEl(name, attrs, text) {
  const n = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}
function chartWidth(container) {
  return Math.max(260, Math.floor(container.clientWidth || 600));
}
// How wide a label is at the chart font size (for layout only).
let measureCtx = null;
function textWidth(s, px, bold) {
  if (measureCtx === null) {
    const c = document.createElement('canvas').getContext('2d');
    measureCtx = c || false;
  }
  if (!measureCtx) return s.length * px * 0.7;
  measureCtx.font = (bold ? '700 ' : '400 ') + px + 'px ' + getComputedStyle(document.body).fontFamily;
  return Math.ceil(measureCtx.measureText(s).width);
}

export function drawForceChart(box, doc, measure) {
  if (!doc) return;
  const forces = Object.keys(doc.forces || {}).sort();
  const joint = intStr((doc.totals || {})[measure]);
  const rows = forces.map((f) => [f, intStr(doc.forces[f][measure])]);

  if (!rows.length) {
    const p = document.createElement('p');
    p.className = 'empty';
    p.textContent = 'No force figures for this operation yet. Joint total: ' + formatWithUnit(measure, joint) + '.';
    box.replaceChildren(p);
    return;
  }
  const width = chartWidth(box);
  const font = 14;
  const barH = 26;
  const gap = 12;
  const top = 30;
  const labelW = Math.max(40, ...forces.map((f) => textWidth(f, font, true))) + 14;
  const valueW = Math.max(textWidth(formatWithUnit(measure, joint), font), ...rows.map(([, v]) => textWidth(formatWithUnit(measure, v), font))) + 12;
  const plotW = Math.max(60, width - labelW - valueW - 8);
  const height = top + rows.length * (barH + gap) + 8;
  const max = Math.max(1, approx(joint), ...rows.map(([, v]) => approx(v)));
  const x = (v) => labelW + (plotW * approx(v)) / max;

  const svg = svgEl('svg', {
    width,
    height,
    viewBox: '0 0 ' + width + ' ' + height,
    role: 'img',
    'aria-label': LABEL[measure] + ' by force. Joint total ' + formatWithUnit(measure, joint) + '. ' +
      rows.map(([f, v]) => f + ' ' + formatWithUnit(measure, v)).join(', ') + '.',
    class: 'svg-chart',
  });
  const defs = svgEl('defs', {});
  const hatch = svgEl('pattern', { id: 'joint-hatch', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
  hatch.appendChild(svgEl('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch-line' }));
  defs.appendChild(hatch);
  svg.appendChild(defs);
  svg.appendChild(svgEl('line', { x1: labelW, x2: labelW, y1: top - 6, y2: height - 4, class: 'axis' }));
  rows.forEach(([f, v], i) => {
    const y = top + i * (barH + gap);
    const g = svgEl('g', { 'data-force': f, 'data-value': v, class: 'bar-row' });
    g.appendChild(svgEl('title', {}, f + ': ' + formatWithUnit(measure, v) + ' (of which from joint outcomes: ' +
      formatWithUnit(measure, intStr(((doc.joint_credit || {})[f] || {})[measure])) + ')'));
    g.appendChild(svgEl('text', { x: labelW - 8, y: y + barH / 2, class: 'label', 'text-anchor': 'end', 'dominant-baseline': 'central' }, f));
    const w = Math.max(approx(v) > 0 ? 2 : 0, x(v) - labelW);
    // The part of the force's figure that comes from joint outcomes
    // (credited to every force involved), drawn hatched at the bar's end.
    const credit = intStr(((doc.joint_credit || {})[f] || {})[measure]);
    const cw = Math.min(w, Math.max(approx(credit) > 0 ? 2 : 0, x(credit) - labelW));
    g.setAttribute('data-joint-credit', credit);
    g.appendChild(svgEl('rect', { x: labelW, y, width: w - cw, height: barH, class: 'bar' }));
    if (cw > 0) {
      g.appendChild(svgEl('rect', { x: labelW + w - cw, y, width: cw, height: barH, class: 'bar-joint' }));
      g.appendChild(svgEl('rect', { x: labelW + w - cw, y, width: cw, height: barH, class: 'bar-joint-hatch' }));
    }
    g.appendChild(svgEl('text', { x: labelW + w + 6, y: y + barH / 2, class: 'value', 'dominant-baseline': 'central' }, formatWithUnit(measure, v)));
    svg.appendChild(g);
  });
  // The joint total, across all bars.
  const jx = x(joint);
  const jl = svgEl('g', { class: 'joint', 'data-joint': joint });
  jl.appendChild(svgEl('line', { x1: jx, x2: jx, y1: top - 8, y2: height - 4, class: 'joint-line' }));
  const jt = 'Joint total ' + formatWithUnit(measure, joint);
  const anchorEnd = jx + textWidth(jt, 13, true) + 4 > width - 4;
  jl.appendChild(svgEl('text', { x: anchorEnd ? jx - 4 : jx + 4, y: top - 14, class: 'joint-label', 'text-anchor': anchorEnd ? 'end' : 'start' }, jt));
  svg.appendChild(jl);

  box.replaceChildren(svg);
}

// "2023-10-09T00:00:00+01:00" → "2023-10-09" (the operation's local date).
export function dayOf(ts) {
  return String(ts).slice(0, 10);
}
// The last day inside [starts, ends): the day before `ends` if it is midnight.
export function lastDayOf(ends) {
  const d = dayOf(ends);
  return /T00:00(:00(\.0+)?)?/.test(String(ends)) ? addDays(d, -1) : d;
}
function addDays(day, n) {
  const t = Date.UTC(+day.slice(0, 4), +day.slice(5, 7) - 1, +day.slice(8, 10)) + n * 86400000;
  return new Date(t).toISOString().slice(0, 10);
}
const WEEKDAY = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTH = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
function dayParts(day) {
  const d = new Date(Date.UTC(+day.slice(0, 4), +day.slice(5, 7) - 1, +day.slice(8, 10)));
  return [WEEKDAY[d.getUTCDay()], d.getUTCDate() + ' ' + MONTH[d.getUTCMonth()]];
}

// Every day of the operation's window (and of the timeline), zeros included.
function timelineDays(tl, op) {
  const byDay = new Map();
  for (const d of (tl && tl.days) || []) byDay.set(d.day, d.totals || {});
  const known = [...byDay.keys()].sort();
  let first = known[0];
  let last = known[known.length - 1];
  if (op && op.starts && op.ends) {
    const s = dayOf(op.starts);
    const e = lastDayOf(op.ends);
    if (!first || s < first) first = s;
    if (!last || e > last) last = e;
  }
  if (!first) return [];
  const days = [];
  for (let d = first; d <= last && days.length < 400; d = addDays(d, 1)) days.push([d, byDay.get(d) || {}]);
  return days;
}

export function drawDayChart(box, timeline, op, measure) {
  if (!timeline) return;
  const days = timelineDays(timeline, op).map(([d, t]) => [d, intStr(t[measure])]);
  const width = chartWidth(box);
  const font = 12;
  const left = 8;
  const top = 24;
  const labelH = 36;
  const plotH = 180;
  const height = top + plotH + labelH;
  const slot = days.length ? (width - left * 2) / days.length : 0;
  const barW = Math.max(2, Math.min(56, slot * 0.7));
  const max = Math.max(1, ...days.map(([, v]) => approx(v)));
  // Thin the labels out so they never overlap.
  const every = Math.max(1, Math.ceil(56 / Math.max(1, slot)));
  const showValues = slot >= textWidth(formatMeasure(measure, String(max)), font) + 4;

  const total = days.reduce((acc, [, v]) => acc + BigInt(v), 0n).toString();
  const svg = svgEl('svg', {
    width,
    height,
    viewBox: '0 0 ' + width + ' ' + height,
    role: 'img',
    'aria-label': LABEL[measure] + ' by day: ' + days.map(([d, v]) => d + ' ' + formatWithUnit(measure, v)).join(', ') + '.',
    class: 'svg-chart',
  });
  svg.appendChild(svgEl('line', { x1: left, x2: width - left, y1: top + plotH, y2: top + plotH, class: 'axis' }));
  days.forEach(([d, v], i) => {
    const cx = left + slot * i + slot / 2;
    const h = approx(v) > 0 ? Math.max(2, (plotH * approx(v)) / max) : 0;
    const g = svgEl('g', { 'data-day': d, 'data-value': v, class: 'day-col' });
    g.appendChild(svgEl('title', {}, d + ': ' + formatWithUnit(measure, v)));
    g.appendChild(svgEl('rect', { x: cx - barW / 2, y: top + plotH - h, width: barW, height: h, class: 'bar' }));
    if (showValues) {
      g.appendChild(svgEl('text', { x: cx, y: top + plotH - h - 5, class: 'value', 'text-anchor': 'middle' }, formatMeasure(measure, v)));
    }
    if (i % every === 0) {
      const [wd, dm] = dayParts(d);
      // Keep the first and last labels inside the chart.
      const half = Math.max(textWidth(wd, font, true), textWidth(dm, font)) / 2 + 1;
      const lx = Math.min(Math.max(cx, half), width - half);
      g.appendChild(svgEl('text', { x: lx, y: top + plotH + 15, class: 'label', 'text-anchor': 'middle' }, wd));
      g.appendChild(svgEl('text', { x: lx, y: top + plotH + 30, class: 'label muted', 'text-anchor': 'middle' }, dm));
    }
    svg.appendChild(g);
  });
  box.replaceChildren(svg);
  const p = document.createElement('p');
  p.className = 'chart-total';
  p.textContent = total !== '0'
    ? 'Sum over these days: ' + formatWithUnit(measure, total) + '.'
    : 'None recorded yet.';
  box.appendChild(p);
}
