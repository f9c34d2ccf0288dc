// Drives the jointops dashboard in a real Chromium for tests/dashboard.rs.
//
//   node tests/browser/dashboard.mjs CONFIG_JSON
//
// CONFIG_JSON: {base, operation, shots, as_of_ms, tokens: {coordinator, kent,
// essex}, no_data_force, silent_force, refused: {force, ids, other_liaison}}.
//
// Protocol (one line each; diagnostics go to stderr):
//   1. Checks, against the API's own answers: the coordinator on a laptop
//      (1366×900: figures, freshness, per-force status, refused records,
//      exports, the figures view with its PDF, publishing, as-of), on a phone
//      (390×844), KENT's liaison and ESSEX's. axe-core in each state.
//      Prints `READY <arrests>`.
//   2. Reads `EXPECT name=value …`, waits until the open page shows those
//      values without reloading, prints `UPDATED <ms>`.
//   3. Reads `CHANGES name=value …`: "what changed since" publication 1 and
//      since the cited moment show them. Prints `CHANGED`.
//   4. Reads `STOPPED?` (the rollup has just stopped): waits until the page
//      says so, prints `STOPPED <ms from reading the line>`, and exits 0.
// Any failure prints `FAIL <reason>`, dumps the pages' text and console
// errors to stderr, and exits 1.

import {
  NAMES, axeCheck, closeBrowser, closePage, expectedText, fail, launch, log, makeApi, must, nextLine, openPage, shot,
  snapshot, text, waitFor, waitForTruth,
} from './lib.mjs';
import {
  checkA11y, checkAsOf, checkChanges, checkDeadLetterCsv, checkDeadLetters, checkExports, checkFiguresView,
  checkForceStatus, checkFreshness, checkLiaison, checkPhoneLayout,
} from './checks.mjs';

const UPDATE_DEADLINE_MS = 30_000;
const STOPPED_DEADLINE_MS = 30_000;
const STDIN_DEADLINE_MS = 10 * 60_000;
const LAPTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };

const cfg = JSON.parse(process.argv[2] || 'null');
if (!cfg || !cfg.base || !cfg.tokens) {
  process.stdout.write('FAIL usage: node dashboard.mjs CONFIG_JSON\n');
  process.exit(1);
}
const base = cfg.base.replace(/\/+$/, '');
const api = makeApi(base, cfg.operation);
const url = (token, extra) => `${base}/#token=${encodeURIComponent(token)}&operation=${encodeURIComponent(cfg.operation)}${extra || ''}`;
const T = cfg.tokens;

process.on('unhandledRejection', (e) => fail(`unhandled: ${e && e.stack ? e.stack : e}`));
process.on('uncaughtException', (e) => fail(`uncaught: ${e && e.stack ? e.stack : e}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => fail(`stopped by ${sig}`));

async function operationForces() {
  return (await api(T.coordinator, '/api/v1/operations')).operations.find((o) => o.id === cfg.operation).forces;
}

// Opens the page with `token` and waits until it agrees with the API.
async function load(label, token, viewport, phone, forces, reason) {
  const p = await openPage(label, viewport, phone);
  // A reason for viewing typed earlier in this tab (the page keeps it in
  // sessionStorage): every request then carries it.
  if (reason) await p.addInitScript((r) => sessionStorage.setItem('jointops.reason', r), reason);
  const t0 = Date.now();
  await p.goto(url(token), { waitUntil: 'load', timeout: 20_000 });
  const doc = await waitForTruth(p, label, api, token, 'totals', forces);
  must(!/token=/.test(p.url()), `${label}: the token is still in the address bar: ${p.url()}`);
  log(`${label}: the page agrees with the API (version ${doc.version}) after ${Date.now() - t0} ms`);
  return { p, doc };
}

async function coordinatorLaptop(forces) {
  // A reason in Welsh: the hub's access log must keep it as typed
  // (tests/dashboard.rs reads it there).
  const { p, doc } = await load('coordinator', T.coordinator, LAPTOP, false, forces, cfg.reason);
  must((await p.inputValue('#reason')) === cfg.reason, 'coordinator: the reason for viewing is not shown as typed');
  await checkFreshness(p, 'coordinator');
  await checkForceStatus(p, 'coordinator', api, T.coordinator, cfg);
  await checkA11y(p, 'coordinator');
  await checkDeadLetters(p, 'coordinator', api, T.coordinator, { operation: cfg.operation, expectIds: cfg.refused.ids, forbidIds: [] });
  await axeCheck(p, 'coordinator');
  await shot(p, cfg.shots, 'dashboard.png', { fullPage: true });
  await p.$eval('#dl-panel', (n) => n.scrollIntoView());
  await shot(p, cfg.shots, 'dead-letters.png');
  await checkDeadLetterCsv(p, 'coordinator', cfg.refused.ids);
  await checkExports(p, 'coordinator', cfg.operation, null);
  await checkFiguresView(p, 'coordinator', api, T.coordinator, cfg, cfg.shots);

  // Figures as of the cited moment: not live, and exactly the API's.
  await waitFor(p, 'coordinator', 'the cited moment to pass', (ms) => Date.now() > ms + 1000, cfg.as_of_ms, 20_000);
  const iso = await checkAsOf(p, 'coordinator as-of', cfg.as_of_ms);
  await waitForTruth(p, 'coordinator as-of', api, T.coordinator, `totals?as_of=${encodeURIComponent(iso)}`, forces);
  await checkExports(p, 'coordinator as-of', cfg.operation, iso);
  await axeCheck(p, 'coordinator as-of');
  await p.click('#back-live');
  await waitFor(p, 'coordinator', 'live figures again', () => document.getElementById('not-live').hidden &&
    /live stream|refreshing/.test(document.getElementById('live-text').textContent));
  await waitForTruth(p, 'coordinator live again', api, T.coordinator, 'totals', forces);
  return { p, doc };
}

async function phone(forces) {
  const { p } = await load('phone', T.coordinator, PHONE, true, forces);
  await checkFreshness(p, 'phone');
  await checkPhoneLayout(p, 'phone', PHONE.width);
  await checkA11y(p, 'phone');
  await axeCheck(p, 'phone');
  await shot(p, cfg.shots, 'dashboard-phone.png', { fullPage: true });
  await closePage('phone');
}

async function liaisons() {
  const force = cfg.refused.force;
  const { p } = await load('liaison', T.kent, LAPTOP, false, [force]);
  await checkFreshness(p, 'liaison');
  await checkLiaison(p, 'liaison', api, T.kent, force);
  await checkA11y(p, 'liaison');
  await checkDeadLetters(p, 'liaison', api, T.kent, { operation: cfg.operation, force, expectIds: cfg.refused.ids, forbidIds: [] });
  await axeCheck(p, 'liaison');
  await shot(p, cfg.shots, 'liaison.png', { fullPage: true });
  await closePage('liaison');

  const other = cfg.refused.other_liaison;
  const code = other.toUpperCase();
  const o = await load(`${other} liaison`, T[other], LAPTOP, false, [code]);
  await checkDeadLetters(o.p, `${other} liaison`, api, T[other], { operation: cfg.operation, force: code, expectIds: [], forbidIds: cfg.refused.ids });
  await closePage(`${other} liaison`);
}

function parsePairs(line, verb) {
  const parts = line.trim().split(/\s+/);
  must(parts[0] === verb && parts.length > 1, `expected "${verb} name=value …", got "${line}"`);
  const pairs = {};
  for (const x of parts.slice(1)) {
    const m = /^([a-z_]+)=(-?\d+)$/.exec(x);
    must(m && NAMES.includes(m[1]), `bad pair "${x}" in "${line}"`);
    pairs[m[1]] = m[2].replace(/^(-?)0+(?=\d)/, '$1');
  }
  return pairs;
}

async function expectLive(p) {
  const want = parsePairs(await nextLine(STDIN_DEADLINE_MS), 'EXPECT');
  const from = Date.now();
  await p.evaluate(() => {
    window.__harnessMark = 'jointops-no-reload';
  });
  await waitFor(p, 'coordinator', `the page showing ${JSON.stringify(want)}`, (w) => Object.entries(w).every(([name, v]) => {
    const nodes = document.querySelectorAll(`[data-total="${name}"]`);
    return nodes.length > 0 && [...nodes].every((n) => n.dataset.value === v);
  }), want, UPDATE_DEADLINE_MS);
  const ms = Date.now() - from;
  const after = await p.evaluate(() => ({ loads: window.__jointopsLoads, mark: window.__harnessMark }));
  must(after.mark === 'jointops-no-reload' && after.loads === 1, `the page reloaded (mark ${after.mark}, loads ${after.loads})`);
  const snap = await snapshot(p);
  for (const [name, v] of Object.entries(want)) {
    const n = snap.totals.find((t) => t.name === name);
    must(n.text === expectedText(name, v), `${name}: page text "${n.text}", expected "${expectedText(name, v)}"`);
  }
  process.stdout.write(`UPDATED ${ms}\n`);
}

async function waitStopped(p) {
  const line = await nextLine(STDIN_DEADLINE_MS);
  must(line.trim() === 'STOPPED?', `expected "STOPPED?", got "${line}"`);
  const from = Date.now();
  await waitFor(p, 'coordinator', 'the page saying the rollup stopped', () => {
    const r = document.getElementById('rollup');
    return r.dataset.state === 'stopped' && /STOPPED/.test(r.textContent);
  }, null, STOPPED_DEADLINE_MS);
  const ms = Date.now() - from;
  const words = await text(p, '#rollup');
  await p.evaluate(() => window.scrollTo(0, 0));
  await shot(p, cfg.shots, 'rollup-stopped.png');
  log(`coordinator: "${words}" ${ms} ms after the rollup stopped`);
  process.stdout.write(`STOPPED ${ms}\n`);
}

async function main() {
  await launch();
  const forces = await operationForces();
  const { p, doc } = await coordinatorLaptop(forces);
  await phone(forces);
  await liaisons();
  process.stdout.write(`READY ${doc.totals.arrests}\n`);

  await expectLive(p);
  const changes = parsePairs(await nextLine(STDIN_DEADLINE_MS), 'CHANGES');
  await checkChanges(p, 'coordinator', changes, cfg.shots, cfg.as_of_ms);
  process.stdout.write('CHANGED\n');
  await waitStopped(p);
  await closeBrowser();
  process.exit(0);
}

main().catch((e) => fail(e && e.message ? e.message : e));
