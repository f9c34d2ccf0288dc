// The checks of the issue's items, each against the API's own answer (never
// against what the page computed), each failing with what it saw.

import {
  DATED, NAMES, axeCheck, downloadFrom, expectedText, log, must, pdfPages, shot, text, waitFor, withUnit,
} from './lib.mjs';

// ------------------------------------------------------------- freshness

// (a) connection, (b) rollup, (c) data age: words, a colour (data-state),
// and every time with a date and zone.
export async function checkFreshness(p, label) {
  await waitFor(p, label, 'the rollup shown as running and caught up', () => {
    const r = document.getElementById('rollup');
    return r && r.dataset.state === 'live' && /running, caught up/.test(r.textContent);
  });
  const live = await text(p, '#live');
  must(/connected to the hub/.test(live) && !/not connected/.test(live), `${label}: the connection line says "${live}"`);
  const rollup = await text(p, '#rollup');
  must(DATED.test(rollup), `${label}: the rollup line has no dated commit time: "${rollup}"`);
  await waitFor(p, label, 'the data age shown', () => /counted/.test(document.getElementById('data-age').textContent));
  const age = await text(p, '#data-age');
  must(/last event of this operation counted/.test(age) && DATED.test(age), `${label}: the data-age line says "${age}"`);
  const colours = await p.evaluate(() => ['live', 'rollup', 'data-age'].map((id) =>
    getComputedStyle(document.querySelector(`#${id} .dot`)).backgroundColor));
  must(new Set(colours).size >= 1 && !colours.includes('rgba(0, 0, 0, 0)'), `${label}: freshness dots without colour: ${colours}`);
  log(`${label}: freshness: "${live}" | "${rollup}" | "${age}"`);
}

// ---------------------------------------------------------- per-force status

export async function checkForceStatus(p, label, api, token, cfg) {
  const status = await api(token, 'status');
  const op = (await api(token, '/api/v1/operations')).operations.find((o) => o.id === cfg.operation);
  await waitFor(p, label, 'a status row for every force of the operation',
    (forces) => forces.every((f) => document.querySelector(`[data-force-status="${f}"]`)), op.forces);
  const rows = await p.$$eval('[data-force-status]', (trs) => trs.map((tr) => ({
    force: tr.dataset.forceStatus, state: tr.dataset.state, cells: [...tr.children].map((c) => c.textContent.trim()),
  })));
  for (const f of status.forces) {
    const row = rows.find((r) => r.force === f.force);
    must(row, `${label}: no status row for ${f.force}`);
    must(row.state === f.state, `${label}: ${f.force} shown as ${row.state}, the API says ${f.state}`);
    must(row.cells[2] === String(f.events), `${label}: ${f.force} events ${row.cells[2]}, API ${f.events}`);
    must(f.last_event_at ? DATED.test(row.cells[3]) : row.cells[3] === 'none', `${label}: ${f.force} last event "${row.cells[3]}"`);
    for (const [reason, n] of Object.entries(f.dead_letters || {})) {
      must(row.cells[4].includes(`${reason}: ${n}`), `${label}: ${f.force} refused "${row.cells[4]}", API ${reason}: ${n}`);
    }
  }
  const none = rows.find((r) => r.force === cfg.no_data_force);
  must(none && none.cells[1] === 'No data yet', `${label}: ${cfg.no_data_force} reads "${none && none.cells[1]}", not "No data yet"`);
  const silent = rows.find((r) => r.force === cfg.silent_force);
  must(silent && silent.cells[1] === 'Silent for 7 hours', `${label}: ${cfg.silent_force} reads "${silent && silent.cells[1]}", not "Silent for 7 hours"`);
  must(rows.find((r) => r.force === 'MPS').cells[1] === 'Reporting', `${label}: MPS is not "Reporting"`);
  // Its place in the chart and the chart's table: a zero.
  const bar = await p.$eval(`[data-force="${cfg.no_data_force}"]`, (g) => g.getAttribute('data-value')).catch(() => null);
  must(bar === '0', `${label}: no zero bar for ${cfg.no_data_force} (${bar})`);
  const cell = await text(p, `#force-chart [data-force-row="${cfg.no_data_force}"] td`).catch(() => null);
  must(cell === '0', `${label}: the chart's table has "${cell}" for ${cfg.no_data_force}`);
  log(`${label}: per-force status agrees with the API (${rows.map((r) => `${r.force} ${r.cells[1]}`).join(', ')})`);
}

// ------------------------------------------------------------- a11y, phone

export async function checkA11y(p, label) {
  const facts = await p.evaluate(() => {
    const figures = document.getElementById('figures');
    let live = null;
    for (let n = figures; n; n = n.parentElement) {
      if (n.hasAttribute('aria-live') || ['status', 'alert', 'log'].includes(n.getAttribute('role'))) live = n.id || n.tagName;
    }
    const name = (id) => [...document.getElementById(id).labels].map((l) => l.textContent.replace(/\s+/g, ' ').trim()).join(' ');
    const bars = [...document.querySelectorAll('#force-chart .bar-row')];
    const days = [...document.querySelectorAll('#day-chart .day-col')];
    const dayTable = document.querySelector('#day-chart details');
    return {
      status: document.getElementById('status').getAttribute('role'),
      live,
      names: [name('force-measure'), name('day-measure')],
      barValues: bars.filter((g) => (g.querySelector('.value') || {}).textContent).length,
      bars: bars.length,
      dayValues: days.filter((g) => g.querySelector('.value')).length,
      days: days.length,
      dayTableOpen: !!(dayTable && dayTable.open),
      tables: [...document.querySelectorAll('#force-chart table, #day-chart table')].length,
      innerLive: document.querySelectorAll('#figures [aria-live], #figures [role="status"]').length,
    };
  });
  must(facts.status === 'status', `${label}: #status has role ${facts.status}`);
  must(facts.live === null && facts.innerLive === 0, `${label}: the figure grid is inside a live region (${facts.live})`);
  must(facts.names[0] !== facts.names[1] && facts.names.every((n) => /^Measure/.test(n)),
    `${label}: the two Measure selectors are labelled ${JSON.stringify(facts.names)}`);
  must(facts.bars > 0 && facts.barValues === facts.bars, `${label}: ${facts.barValues} of ${facts.bars} bars show their value`);
  must(facts.days > 0 && (facts.dayValues === facts.days || facts.dayTableOpen),
    `${label}: ${facts.dayValues} of ${facts.days} days show a value, and their table is closed`);
  must(facts.tables === 2, `${label}: ${facts.tables} data tables for the two charts`);
  log(`${label}: a11y facts hold (status live region, quiet figure grid, labels ${JSON.stringify(facts.names)}, values and tables)`);
}

export async function checkPhoneLayout(p, label, width) {
  const layout = await p.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    figures: document.getElementById('figures').getBoundingClientRect().top + window.scrollY,
    controls: document.getElementById('controls').getBoundingClientRect().top + window.scrollY,
    screen: window.innerHeight,
  }));
  must(layout.scroll <= width, `${label}: the page scrolls sideways (scrollWidth ${layout.scroll} > ${width})`);
  must(layout.figures < layout.controls, `${label}: the figures (${layout.figures}px) come after the controls (${layout.controls}px)`);
  must(layout.figures < layout.screen, `${label}: the figures start at ${layout.figures}px, below the first screen (${layout.screen}px)`);
  log(`${label}: figures first (at ${Math.round(layout.figures)}px), no sideways scroll`);
}

// ------------------------------------------------------------ dead letters

export async function checkDeadLetters(p, label, api, token, { operation, force, expectIds, forbidIds }) {
  const q = `/api/v1/dead-letters?operation=${encodeURIComponent(operation)}${force ? `&force=${force}` : ''}`;
  const doc = await api(token, q);
  await waitFor(p, label, 'the refused records listed', (n) => document.querySelectorAll('tr[data-dead-letter]').length === n,
    doc.dead_letters.length);
  const rows = await p.$$eval('tr[data-dead-letter]', (trs) => trs.map((tr) => ({
    id: tr.dataset.deadLetter, force: tr.dataset.dlForce, cells: [...tr.children].map((c) => c.textContent.trim()),
  })));
  for (const d of doc.dead_letters) {
    const row = rows.find((r) => r.id === (d.event_id || '') && r.cells[2] === d.reason);
    must(row, `${label}: the API's refused ${d.event_id} (${d.reason}) is not on the page`);
    must(row.cells[4] === (d.advice || '') && row.cells[3] === (d.detail || ''), `${label}: ${d.event_id}: advice or detail differ from the API's`);
  }
  for (const id of expectIds) {
    const row = rows.find((r) => r.id === id);
    must(row && row.cells[4].length > 10, `${label}: ${id} is not listed with advice`);
  }
  for (const id of forbidIds) must(!rows.some((r) => r.id === id), `${label}: ${id} is listed, and must not be`);
  if (force) must(rows.every((r) => r.force === force), `${label}: a refused record of another force is listed`);
  log(`${label}: ${rows.length} refused records, as the API lists them (${[...new Set(rows.map((r) => r.cells[2]))].join(', ')})`);
  return rows;
}

// ---------------------------------------------------------------- exports

function csvHeader(t) {
  return t.split(/\r?\n/)[0].split(',');
}
// Every row carries the operation, the moment and the generation time.
function checkCsv(label, file, operation, asOfIso) {
  must(/\.csv$/.test(file.name) && file.name.includes(operation), `${label}: file name "${file.name}"`);
  const lines = file.text.trim().split(/\r?\n/);
  const head = csvHeader(file.text);
  must(head[0] === 'operation' && head[1] === 'as_of' && head[2] === 'generated_at', `${label} ${file.name}: columns begin ${head.slice(0, 3)}`);
  must(lines.length > 1, `${label} ${file.name}: no rows`);
  for (const line of lines.slice(1)) {
    const cells = line.split(',');
    must(cells[0] === operation && !Number.isNaN(Date.parse(cells[1])) && !Number.isNaN(Date.parse(cells[2])), `${label} ${file.name}: row "${line}"`);
    if (asOfIso) must(Date.parse(cells[1]) === Date.parse(asOfIso), `${label} ${file.name}: as_of ${cells[1]}, not ${asOfIso}`);
  }
}

export async function checkExports(p, label, operation, asOfIso) {
  const stamp = asOfIso ? new Date(asOfIso).toISOString().replace(/\.\d+/, '').replace(/[-:]/g, '') : null;
  await p.setChecked('#units-published', false);
  for (const view of ['totals.csv', 'forces.csv', 'timeline.csv']) {
    const file = await downloadFrom(p, `#exports [data-export="${view}"]`);
    checkCsv(label, file, operation, asOfIso);
    if (stamp) must(file.name.includes(stamp), `${label}: ${file.name} does not name the moment ${stamp}`);
    log(`${label}: saved ${file.name} (${file.text.split('\n').length - 1} lines)`);
  }
  await p.setChecked('#units-published', true);
  for (const view of ['totals.csv', 'forces.csv']) {
    const file = await downloadFrom(p, `#exports [data-export="${view}"]`);
    checkCsv(label, file, operation, asOfIso);
    for (const col of ['drugs_class_a_kg', 'cash_gbp']) must(file.text.includes(col), `${label}: ${file.name} (published units) has no ${col}`);
  }
  await p.setChecked('#units-published', false);
}

export async function checkDeadLetterCsv(p, label, ids) {
  const file = await downloadFrom(p, '#dl-panel [data-export="dead-letters.csv"]');
  const head = csvHeader(file.text);
  must(['operation', 'force', 'event_id', 'reason', 'advice'].every((c) => head.includes(c)), `${label}: ${file.name} columns ${head}`);
  for (const id of ids) must(file.text.includes(id), `${label}: ${file.name} lacks ${id}`);
  log(`${label}: saved ${file.name}`);
}

// ------------------------------------------------------------ figures view

const RELEASE = {
  arrests: '290 arrests',
  charges: '163 people charged with 377 offences',
  lines_closed: '92 county lines closed',
  drugs: '7.6 kg of Class A drugs and 9.3 kg of Class B drugs seized',
  cash_pence: '£214,568 in cash seized',
};

export async function checkFiguresView(p, label, api, token, cfg, shots) {
  await p.click('#open-figures');
  await waitFor(p, label, 'the figures view', () => !document.getElementById('figures-view').hidden &&
    document.querySelectorAll('#fv-lines li').length > 0);
  const lines = Object.fromEntries(await p.$$eval('#fv-lines li', (li) => li.map((n) => [n.dataset.line, n.textContent.trim()])));
  for (const [k, want] of Object.entries(RELEASE)) must(lines[k] === want, `${label}: release line ${k} reads "${lines[k]}", not "${want}"`);
  const doc = await api(token, 'totals');
  const prov = doc.provisional || { joint: { provisional_seizures: doc.totals.provisional_seizures }, forces: {} };
  const provText = await text(p, '#fv-provisional');
  const n = String(prov.joint.provisional_seizures);
  if (n === '0') must(/No seizure in these figures is provisional/.test(provText), `${label}: provisional "${provText}"`);
  else {
    must(provText.includes(`${n} seizure`), `${label}: provisional "${provText}" does not say ${n}`);
    for (const [f, t] of Object.entries(prov.forces)) {
      if (String(t.provisional_seizures) !== '0') must(provText.includes(f), `${label}: provisional statement does not name ${f}`);
    }
  }
  const meta = await p.$$eval('.release-meta dd', (dd) => dd.map((d) => d.textContent.trim()));
  must(meta[0].includes(cfg.operation), `${label}: figures view operation "${meta[0]}"`);
  must(DATED.test(meta[1]) && DATED.test(meta[2]), `${label}: as-of "${meta[1]}" / produced "${meta[2]}" lack date and zone`);
  must(/Press office/.test(meta[3]) && /coordinator/.test(meta[3]), `${label}: produced by "${meta[3]}"`);
  const pdf = await p.pdf({ format: 'A4' });
  must(pdfPages(pdf) === 1, `${label}: the figures print on ${pdfPages(pdf)} A4 pages, not 1`);
  await axeCheck(p, `${label} figures view`);
  await shot(p, shots, 'figures.png', { fullPage: true });
  log(`${label}: figures view reads ${JSON.stringify(Object.values(lines).slice(0, 4))}…; "${provText}"; one A4 page`);

  await p.fill('#publish-note', 'Monday release');
  await p.click('#publish-form button[type="submit"]');
  await waitFor(p, label, 'the publication listed', () => [...document.querySelectorAll('[data-publication]')]
    .some((tr) => tr.textContent.includes('Monday release')));
  const pubs = await api(token, 'publications');
  must(pubs.publications.length === 1 && pubs.publications[0].note === 'Monday release', `${label}: the API has ${JSON.stringify(pubs.publications.map((x) => x.note))}`);
  must(String(pubs.publications[0].totals.arrests) === '290', `${label}: published arrests ${pubs.publications[0].totals.arrests}`);
  await p.click('#close-figures');
  await waitFor(p, label, 'the dashboard back', () => !document.getElementById('content').hidden);
}

// ------------------------------------------------------------------ as-of

// The moment as wall-clock time in London, as a person would type it.
export function londonInput(ms) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-GB', {
    timeZone: 'Europe/London', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}`;
}

export async function setMoment(p, form, ms) {
  await p.selectOption('#moment-zone', 'Europe/London');
  await p.fill(`#${form}-input`, londonInput(ms));
  await p.click(`#${form}-form button[type="submit"]`);
}

export async function checkAsOf(p, label, ms) {
  const iso = new Date(ms).toISOString();
  await setMoment(p, 'asof', ms);
  await waitFor(p, label, 'the not-live banner', () => !document.getElementById('not-live').hidden);
  const banner = await text(p, '#not-live-text');
  must(/Not live/.test(banner) && banner.includes(iso) && DATED.test(banner), `${label}: banner "${banner}"`);
  must(decodeURIComponent(new URL(p.url()).hash).includes(`as_of=${iso}`), `${label}: the address does not carry as_of: ${p.url()}`);
  await waitFor(p, label, 'the connection line saying the figures are not live',
    () => /not live/.test(document.getElementById('live').textContent));
  return iso;
}

// ----------------------------------------------------------------- liaison

export async function checkLiaison(p, label, api, token, force) {
  const status = await api(token, 'status');
  await waitFor(p, label, 'the liaison note', () => !document.getElementById('liaison-note').hidden &&
    /hidden from you/.test(document.getElementById('liaison-note').textContent) && /\d/.test(document.getElementById('liaison-note').textContent));
  const note = await text(p, '#liaison-note');
  must(note.includes(`${status.hidden_forces} other`) && note.includes(force), `${label}: note "${note}", API hidden_forces ${status.hidden_forces}`);
  const doc = await api(token, 'totals');
  await waitFor(p, label, 'the own-force table', (n) => document.querySelectorAll('#own-table [data-own]').length === n, NAMES.length);
  const rows = await p.$$eval('#own-table [data-own]', (trs) => trs.map((tr) => [tr.dataset.own, [...tr.children].map((c) => c.textContent.trim())]));
  for (const [name, cells] of rows) {
    const want = [withUnit(name, doc.forces[force][name]), withUnit(name, doc.joint_credit[force][name]), withUnit(name, doc.totals[name])];
    must(cells.slice(1).join('|') === want.join('|'), `${label}: ${name} reads ${cells.slice(1)}, API ${want}`);
  }
  must(Object.keys(doc.forces).join() === force, `${label}: the API gives a liaison forces ${Object.keys(doc.forces)}`);
  const publishHidden = await p.$eval('#publish-panel', (n) => n.hidden);
  must(publishHidden, `${label}: a liaison is offered "Publish these figures"`);
  log(`${label}: "${note}"; own table of ${rows.length} measures agrees with the API`);
}

// ------------------------------------------------------------ corrections

export async function checkChanges(p, label, want, shots, asOfMs) {
  await p.click('#open-figures');
  await waitFor(p, label, 'the publications list', () => document.querySelector('[data-publication="1"] button'));
  await p.click('[data-publication="1"] button');
  const sel = Object.entries(want).map(([k, v]) => `#pub-changes-table [data-change="Joint:${k}"][data-value="${v}"]`);
  await waitFor(p, label, `changes since publication 1 showing ${JSON.stringify(want)}`, (s) => s.every((x) => document.querySelector(x)), sel);
  const head = await text(p, '#pub-changes-head');
  must(DATED.test(head), `${label}: the changes heading "${head}" has no dated moment`);
  await p.$eval('#pub-changes', (n) => n.scrollIntoView());
  await shot(p, shots, 'publication-changes.png');
  await p.click('#close-figures');
  // The same correction seen as "changes since" the cited moment.
  await setMoment(p, 'diff', asOfMs);
  const diffSel = Object.entries(want).map(([k, v]) => `#diff-table [data-change="Joint:${k}"][data-value="${v}"]`);
  await waitFor(p, label, 'changes since the cited moment', (s) => s.every((x) => document.querySelector(x)), diffSel);
  const diffHead = await text(p, '#diff-head');
  must(/Not live/.test(diffHead) && DATED.test(diffHead), `${label}: the diff heading "${diffHead}"`);
  await axeCheck(p, `${label} changes`);
  log(`${label}: "${head}" and "${diffHead}" both show ${JSON.stringify(want)}`);
}

export { expectedText };
