// jointops dashboard: the charts, drawn as inline SVG (by force, with each
// force's joint credit hatched; by day), each with a table of the same
// figures (for screen readers, and for values that do not fit on a bar).
// Below them, the page's other tables and the figures for publication.
import {
  HttpError, LABEL, MEASURES, approx, compactStamp, dispositionName, formatMeasure, formatWithUnit, intStr, opPath,
  pressLines, provisionalStatement, query, when,
} from './format.js';

// A small element builder: h('td', {class: 'num'}, 'text', child, …).
export function h(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) n.append(c);
  return n;
}
// Columns named '#…' hold numbers (right-aligned); the '#' is not shown.
function table(caption, head, rows, attrs) {
  return h('table', attrs || {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col', class: c[0] === '#' ? 'num' : null }, c.replace(/^#/, ''))))),
    h('tbody', {}, rows));
}
// A table that scrolls sideways inside itself on a phone, never the page.
export function scroller(label, child) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: 0 }, child);
}

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

// `forceList`: the forces to show, those without figures as zero bars (a
// force that has sent nothing keeps its place).
export function drawForceChart(box, doc, measure, forceList) {
  if (!doc) return;
  const forces = [...new Set([...(forceList || []), ...Object.keys(doc.forces || {})])].sort();
  const joint = intStr((doc.totals || {})[measure]);
  const rows = forces.map((f) => [f, intStr(((doc.forces || {})[f] || {})[measure])]);

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

  const credit = (f) => intStr(((doc.joint_credit || {})[f] || {})[measure]);
  box.replaceChildren(svg, altTable(LABEL[measure] + ' by force, as a table', false,
    table(null, ['Force', '#' + LABEL[measure], '#of which from joint outcomes'], [
      ...rows.map(([f, v]) => h('tr', { 'data-force-row': f }, h('th', { scope: 'row' }, f),
        h('td', { class: 'num' }, formatWithUnit(measure, v)), h('td', { class: 'num' }, formatWithUnit(measure, credit(f))))),
      h('tr', { class: 'total-row' }, h('th', { scope: 'row' }, 'Joint total'), h('td', { class: 'num' }, formatWithUnit(measure, joint)), h('td', {}, '')),
    ])));
}

// The chart's figures as a table, in a disclosure; open when the chart
// itself cannot show every value.
function altTable(summary, open, tbl) {
  return h('details', { class: 'alt-table', open: open || null }, h('summary', {}, summary), scroller(summary, tbl));
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
  const p = h('p', { class: 'chart-total' }, total !== '0'
    ? 'Sum over these days: ' + formatWithUnit(measure, total) + '.'
    : 'None recorded yet.');
  box.replaceChildren(svg, p, altTable(LABEL[measure] + ' by day, as a table', !showValues,
    table(null, ['Day', '#' + LABEL[measure]], days.map(([d, v]) => h('tr', {}, h('th', { scope: 'row' }, dayParts(d).join(' ')),
      h('td', { class: 'num' }, formatWithUnit(measure, v)))))));
}

// ------------------------------------------------------------- tables

const STATE_WORDS = { reporting: 'Reporting', 'no-data': 'No data yet' };
function forceState(f) {
  if (f.state === 'silent') {
    const n = intStr(f.silent_hours);
    return 'Silent for ' + n + (n === '1' ? ' hour' : ' hours');
  }
  return STATE_WORDS[f.state] || String(f.state || 'unknown');
}
function reasons(byReason) {
  const list = Object.entries(byReason || {}).filter(([, n]) => intStr(n) !== '0');
  return list.length ? list.map(([r, n]) => r + ': ' + intStr(n)).join(', ') : 'none';
}

// Per-force status: the API's rows, plus a "no data yet" row for each force
// of the operation it did not list (an older hub, or a force it never saw).
export function renderForceStatus(box, status, forceList) {
  const rows = new Map(((status && status.forces) || []).map((f) => [f.force, f]));
  for (const f of forceList || []) if (!rows.has(f)) rows.set(f, { force: f, events: 0, last_event_at: null, state: 'no-data', dead_letters: {} });
  const sorted = [...rows.values()].sort((a, b) => (a.force < b.force ? -1 : 1));
  box.replaceChildren(scroller('Forces reporting', table(null,
    ['Force', 'Status', '#Events counted', 'Last counted event', 'Refused records'],
    sorted.map((f) => h('tr', { 'data-force-status': f.force, 'data-state': f.state },
      h('th', { scope: 'row' }, f.force),
      h('td', {}, h('span', { class: 'state-word', 'data-state': f.state }, forceState(f))),
      h('td', { class: 'num' }, intStr(f.events)),
      h('td', {}, f.last_event_at ? when(f.last_event_at) : 'none'),
      h('td', {}, reasons(f.dead_letters)))))));
}

// Refused records, each with what the force should do about it.
export function renderDeadLetters(box, doc) {
  const list = Array.isArray(doc.dead_letters) ? doc.dead_letters : [];
  const counts = doc.counts || (Array.isArray(doc.dead_letters) ? {} : doc.dead_letters) || {};
  const total = Object.values(counts).reduce((a, n) => a + BigInt(intStr(n)), 0n);
  const summary = h('p', { class: 'dl-summary' }, total === 0n
    ? 'No refused records.'
    : total + (total === 1n ? ' refused record' : ' refused records') + ' (' + reasons(counts) + ')' +
      (doc.truncated ? '; the first 1,000 are listed.' : '.'));
  if (!list.length) {
    box.replaceChildren(summary);
    return;
  }
  box.replaceChildren(summary, scroller('Refused records', table(null,
    ['Force', 'Event id', 'Reason', 'Detail', 'What the force should do', 'Refused at'],
    list.map((d) => h('tr', { 'data-dead-letter': d.event_id || '', 'data-dl-force': d.force || '' },
      h('th', { scope: 'row' }, d.force || 'unknown'),
      h('td', { class: 'mono' }, d.event_id || '–'),
      h('td', {}, d.reason || ''),
      h('td', {}, d.detail || ''),
      h('td', { class: 'advice' }, d.advice || ''),
      h('td', {}, d.at ? when(d.at) : '–'))), { class: 'dl-table' })));
}

// A liaison's own force: every measure, the part from joint outcomes, and
// the joint total beside it.
export function renderOwnForce(box, doc, force) {
  const mine = ((doc && doc.forces) || {})[force] || {};
  const credit = ((doc && doc.joint_credit) || {})[force] || {};
  box.replaceChildren(scroller(force + ' figures', table(force + '’s figures, all measures',
    ['Measure', '#' + force, '#of which from joint outcomes', '#Joint total (all forces)'],
    MEASURES.map(([name, label]) => h('tr', { 'data-own': name },
      h('th', { scope: 'row' }, label),
      h('td', { class: 'num' }, formatWithUnit(name, intStr(mine[name]))),
      h('td', { class: 'num' }, formatWithUnit(name, intStr(credit[name]))),
      h('td', { class: 'num' }, formatWithUnit(name, intStr(((doc && doc.totals) || {})[name]))))))));
}

// A difference, figure by figure: only what changed, signed.
export function renderChanges(box, changes) {
  const signed = (name, v) => (v.charAt(0) === '-' ? '' : '+') + formatWithUnit(name, v);
  const rows = [];
  const add = (who, t) => {
    for (const [name, label] of MEASURES) {
      const v = intStr((t || {})[name]);
      if (v !== '0') rows.push(h('tr', { 'data-change': who + ':' + name, 'data-value': v }, h('th', { scope: 'row' }, who), h('td', {}, label), h('td', { class: 'num' }, signed(name, v))));
    }
  };
  add('Joint', changes.totals);
  for (const f of Object.keys(changes.forces || {}).sort()) add(f, changes.forces[f]);
  box.replaceChildren(rows.length
    ? scroller('Changes', table(null, ['Whose', 'Measure', '#Change'], rows))
    : h('p', { class: 'no-change' }, 'No figure has changed.'));
}

// The publications of an operation, newest first, each with "what changed".
export function renderPublications(box, list, onChanges) {
  if (!list.length) {
    box.replaceChildren(h('p', {}, 'Nothing published yet for this operation.'));
    return;
  }
  box.replaceChildren(scroller('Publications', table(null, ['No.', 'Published', 'By', 'Figures as of', 'Note', ''],
    list.map((p) => h('tr', { 'data-publication': intStr(p.id) },
      h('th', { scope: 'row' }, intStr(p.id)),
      h('td', {}, when(p.published_at)),
      h('td', {}, p.published_by || ''),
      h('td', {}, when(p.as_of)),
      h('td', {}, p.note || ''),
      h('td', {}, h('button', { type: 'button', class: 'secondary small', onclick: () => onChanges(p) },
        'What changed since no. ' + intStr(p.id))))))));
}

// The figures for publication: the release's sentences and what a
// citation needs (operation, moment, when and by whom produced).
export function drawRelease(els, doc, opLabel, me) {
  els.fvOperation.textContent = opLabel;
  if (!doc) return;
  const moment = doc.as_of || doc.generated_at;
  els.fvAsOf.textContent = moment ? when(moment) + ' (' + moment + ')' + (doc.as_of ? '' : ', the live figures when produced')
    : 'now (the hub did not say when)';
  els.fvProduced.textContent = when(Date.now()) + (doc.generated_at ? '; figures generated by the hub ' + when(doc.generated_at) : '');
  els.fvBy.textContent = me ? (me.label || 'unnamed') + ' (token ' + me.token_id + ', ' +
    (me.role === 'force' ? me.force + ' liaison' : 'coordinator') + ')' : 'unknown (this hub does not say who)';
  els.fvLines.replaceChildren(...pressLines(doc.totals).map(([k, t]) => h('li', { 'data-line': k }, t)));
  els.fvProvisional.textContent = provisionalStatement(doc);
}

// ------------------------------------------------------------ the tools
// Below the charts: refused records, changes since a moment, downloads, and
// the figures for publication. They fetch through `ctx` (app.js's client,
// state and elements), then draw with the functions above.
export function makeTools(ctx) {
  const { el, state } = ctx;
  const { getJson, postJson, request, headers } = ctx.client;

  // ------------------------------------------------- refused records

  function deadLetterQuery() {
    return query({ operation: state.opId, force: ctx.isLiaison() ? state.me.force : null });
  }
  async function refreshDeadLetters(gen) {
    try {
      const doc = await getJson('/api/v1/dead-letters' + deadLetterQuery());
      if (gen === state.gen) renderDeadLetters(el.deadLetters, doc);
    } catch (err) {
      if (gen !== state.gen) return;
      if (ctx.authFailed(err)) return;
      el.deadLetters.replaceChildren(h('p', {}, err instanceof HttpError && err.status === 403
        ? 'This hub shows refused records to coordinators only.'
        : 'Refused records could not be read (' + err.message + ').'));
    }
  }

  // ------------------------------------------------------- changes since

  async function showDiff(fromIso) {
    el.diffResult.hidden = false;
    el.diffHead.textContent = 'Computing the changes since ' + when(fromIso) + '…';
    el.diffTable.replaceChildren();
    try {
      const d = await getJson(opPath(state.opId, 'diff' + query({ from: fromIso })));
      el.diffHead.textContent = 'Not live: what changed from ' + when(d.from || fromIso) + ' to ' +
        (d.to ? when(d.to) : 'the moment it was computed, ' + when(d.generated_at || Date.now())) + '.';
      renderChanges(el.diffTable, d);
    } catch (err) {
      if (ctx.authFailed(err)) return;
      el.diffHead.textContent = 'The changes could not be computed: ' + err.message + '.';
    }
  }

  // ------------------------------------------------------------ downloads

  // The API's name from Content-Disposition, else one that says as much.
  function fileName(res, view) {
    const name = dispositionName(res.headers.get('Content-Disposition'));
    if (name) return name;
    const moment = state.asOf ? 'as-of-' + compactStamp(state.asOf) : 'now-' + compactStamp(new Date().toISOString());
    return (view === 'dead-letters.csv' ? 'dead-letters-' + state.opId : state.opId + '-' + view.replace(/\.csv$/, '')) + '-' + moment + '.csv';
  }

  // Fetched with the bearer token (a plain link could not send it), saved
  // through a Blob.
  async function download(view) {
    const path = view === 'dead-letters.csv'
      ? '/api/v1/dead-letters.csv' + deadLetterQuery()
      : opPath(state.opId, view + query({ as_of: state.asOf, units: el.unitsPublished.checked ? 'published' : null }));
    el.exportMsg.textContent = 'Preparing ' + view + '…';
    try {
      const res = await request(path, { headers: headers({ Accept: 'text/csv' }) });
      const name = fileName(res, view);
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      el.exportMsg.textContent = 'Saved ' + name + '.';
    } catch (err) {
      if (ctx.authFailed(err)) return;
      el.exportMsg.textContent = 'The download failed: ' + err.message + '.';
    }
  }

  // ------------------------------------------- figures for publication

  function openFigures() {
    el.figuresView.hidden = false;
    el.content.hidden = true;
    document.body.classList.add('figures-open');
    renderFigures();
    refreshPublications();
    el.hRelease.focus();
  }
  function closeFigures() {
    el.figuresView.hidden = true;
    document.body.classList.remove('figures-open');
    el.content.hidden = !state.totals;
  }

  // The release's sentences and the facts a citation needs: which operation,
  // the moment the figures are for, when and by whom the page was produced.
  function renderFigures() {
    const op = ctx.currentOp();
    drawRelease(el, state.totals, op && op.name ? op.name + ' (' + state.opId + ')' : state.opId || '', state.me);
  }

  async function refreshPublications() {
    try {
      const doc = await getJson(opPath(state.opId, 'publications'));
      renderPublications(el.publications, doc.publications || [], showPublicationChanges);
    } catch (err) {
      if (ctx.authFailed(err)) return;
      el.publications.replaceChildren(h('p', {}, err instanceof HttpError && err.status === 404
        ? 'This hub does not record publications yet.' : 'Publications could not be read (' + err.message + ').'));
    }
  }

  async function publish(note) {
    const doc = state.totals;
    const body = { note };
    // Exactly the figures shown: their moment, not the moment of the click.
    const moment = state.asOf || (doc && doc.generated_at);
    if (moment) body.as_of = moment;
    el.publishMsg.textContent = 'Publishing…';
    try {
      const p = await postJson(opPath(state.opId, 'publications'), body);
      el.publishMsg.textContent = 'Published as no. ' + intStr(p.id) + ', ' + when(p.published_at) + ', by ' + p.published_by + '.';
      el.publishNote.value = '';
      refreshPublications();
    } catch (err) {
      if (ctx.authFailed(err)) return;
      el.publishMsg.textContent = 'Not published: ' + (err.status === 403 ? 'only coordinators may publish' : err.message) + '.';
    }
  }

  async function showPublicationChanges(p) {
    el.pubChanges.hidden = false;
    el.pubChangesHead.textContent = 'Computing what changed since publication no. ' + intStr(p.id) + '…';
    el.pubChangesTable.replaceChildren();
    try {
      const d = await getJson(opPath(state.opId, 'publications/' + encodeURIComponent(intStr(p.id)) + '/changes'));
      el.pubChangesHead.textContent = 'What changed since publication no. ' + intStr(p.id) + ' (published ' + when(p.published_at) +
        ', figures as of ' + when(p.as_of) + ') to ' + when((d.now || {}).generated_at || Date.now()) + ':';
      renderChanges(el.pubChangesTable, d.changes || {});
    } catch (err) {
      if (ctx.authFailed(err)) return;
      el.pubChangesHead.textContent = 'The changes could not be computed: ' + err.message + '.';
    }
  }

  function wire() {
    el.diffForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const iso = ctx.momentFrom(el.diffInput);
      if (iso) showDiff(iso);
    });
    for (const b of document.querySelectorAll('[data-export]')) b.addEventListener('click', () => download(b.dataset.export));
    el.openFigures.addEventListener('click', openFigures);
    el.closeFigures.addEventListener('click', closeFigures);
    el.printFigures.addEventListener('click', () => window.print());
    el.publishForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const note = el.publishNote.value.trim();
      if (note) publish(note);
    });
  }

  return { wire, refreshDeadLetters, closeFigures, renderFigures };
}
