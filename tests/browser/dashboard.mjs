// Drives the jointops dashboard in a real Chromium for the Rust integration test.
//
//   node tests/browser/dashboard.mjs BASE_URL TOKEN OPERATION SCREENSHOT_DIR
//
// Protocol (one line each, on stdout/stdin; diagnostics go to stderr):
//   1. Opens BASE_URL/#token=TOKEN&operation=OPERATION (1280×900) and waits, up to
//      20 s, until every [data-total] element's data-value equals the API's own
//      /totals figure (fetched here with the same token), its text is that
//      figure formatted, and there is one force bar per force of the API's
//      `forces`. Screenshots SCREENSHOT_DIR/dashboard.png (full page) and
//      dashboard-phone.png (375×812, where the page must not scroll sideways).
//   2. Prints `READY <arrests>`.
//   3. Reads `EXPECT name=value ...` from stdin, then waits, up to 30 s, until
//      the page shows those values, without reloading. Prints
//      `UPDATED <ms from reading EXPECT to seeing the values>` and exits 0.
// Any failure prints `FAIL <reason>`, dumps the page's text and console errors
// to stderr, and exits 1.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const CHROMIUM = process.env.JOINTOPS_CHROMIUM || '/usr/bin/chromium';
const LOAD_DEADLINE_MS = 20_000;
const UPDATE_DEADLINE_MS = 30_000;
const STDIN_DEADLINE_MS = 10 * 60_000;
const NAMES = [
  'arrests', 'people_charged', 'charges', 'charges_drug_trafficking', 'charges_class_a', 'charges_class_b',
  'charges_modern_slavery', 'charges_weapons', 'charges_other', 'lines_closed', 'people_safeguarded',
  'referrals_support', 'referrals_nrm', 'people_engaged', 'firearms', 'weapons', 'drugs_class_a_mg',
  'drugs_class_b_mg', 'cash_pence', 'joint_outcomes', 'provisional_seizures',
];

const [baseArg, token, operation, shotDir] = process.argv.slice(2);
if (!baseArg || !token || !operation || !shotDir) {
  process.stdout.write('FAIL usage: node dashboard.mjs BASE_URL TOKEN OPERATION SCREENSHOT_DIR\n');
  process.exit(1);
}
const base = baseArg.replace(/\/+$/, '');
const pageUrl = `${base}/#token=${encodeURIComponent(token)}&operation=${encodeURIComponent(operation)}`;

let browser = null;
let page = null;
const consoleLines = [];
const log = (...a) => process.stderr.write(`[dashboard.mjs] ${a.join(' ')}\n`);

// ------------------------------------------------------------ exact numbers

// JSON with every integer kept as its exact decimal string (totals may pass 2^53).
function parseExact(text) {
  const wrapped = text.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, (m) =>
    m.startsWith('"') || !/^-?\d+$/.test(m) ? m : `{"\\u0000int":"${m}"}`);
  return JSON.parse(wrapped, (k, v) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && '\u0000int' in v
      ? v['\u0000int']
      : v);
}

// The page's formatting, written again independently with BigInt.
function group(n) {
  const neg = n < 0n;
  let d = (neg ? -n : n).toString();
  const parts = [];
  while (d.length > 3) {
    parts.unshift(d.slice(-3));
    d = d.slice(0, -3);
  }
  parts.unshift(d);
  return (neg ? '-' : '') + parts.join(',');
}
function expectedText(name, value) {
  const v = BigInt(value);
  if (name === 'cash_pence') {
    const neg = v < 0n;
    const a = neg ? -v : v;
    return `${neg ? '-' : ''}£${group(a / 100n)}.${(a % 100n).toString().padStart(2, '0')}`;
  }
  if (name === 'drugs_class_a_mg' || name === 'drugs_class_b_mg') {
    const neg = v < 0n;
    const a = neg ? -v : v;
    const thousandths = (a + 500n) / 1000n; // grams, rounded half up
    if (thousandths === 0n) return a === 0n ? '0' : '<0.001';
    const frac = (thousandths % 1000n).toString().padStart(3, '0').replace(/0+$/, '');
    return `${neg ? '-' : ''}${group(thousandths / 1000n)}${frac ? `.${frac}` : ''}`;
  }
  return group(v);
}

// ---------------------------------------------------------------- failure

async function dumpPage(p, label) {
  if (!p) return;
  try {
    // The page's text, with each select box showing only its chosen option.
    const text = await p.evaluate(() => {
      const chosen = [...document.body.querySelectorAll('select')].map((s) => (s.selectedOptions[0] ? s.selectedOptions[0].textContent : ''));
      const copy = document.body.cloneNode(true);
      copy.querySelectorAll('select').forEach((s, i) => s.replaceWith(`[${chosen[i]}]`));
      document.body.appendChild(copy);
      copy.hidden = false;
      const out = copy.innerText;
      copy.remove();
      return out;
    });
    process.stderr.write(`----- ${label} text -----\n${text}\n`);
  } catch (e) {
    process.stderr.write(`----- ${label} text unavailable: ${e.message}\n`);
  }
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
}

let failing = false;
async function fail(reason) {
  if (failing) return;
  failing = true;
  process.stdout.write(`FAIL ${String(reason).replace(/\s+/g, ' ').trim()}\n`);
  await dumpPage(page, 'page');
  process.stderr.write(`----- console errors, page errors, failed requests -----\n${consoleLines.join('\n') || '(none)'}\n`);
  await closeBrowser();
  process.exit(1);
}
process.on('unhandledRejection', (e) => fail(`unhandled: ${e && e.stack ? e.stack : e}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => fail(`stopped by ${sig}`));
process.on('uncaughtException', (e) => fail(`uncaught: ${e && e.stack ? e.stack : e}`));

function watch(p, label) {
  p.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(`${label} console.${m.type()}: ${m.text()}`);
  });
  p.on('pageerror', (e) => consoleLines.push(`${label} pageerror: ${e.message}`));
  p.on('requestfailed', (r) => {
    const why = r.failure() ? r.failure().errorText : '';
    // An aborted stream is the page reconnecting or closing: worth a note only.
    consoleLines.push(`${label} requestfailed: ${r.method()} ${r.url()} ${why}`);
  });
  p.on('response', (r) => {
    if (r.status() >= 400) consoleLines.push(`${label} HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
}

// ------------------------------------------------------------ the API truth

async function truth() {
  const url = `${base}/api/v1/operations/${encodeURIComponent(operation)}/totals`;
  const res = await fetch(url, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', 'X-Justification': 'dashboard browser test' },
  });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const doc = parseExact(await res.text());
  if (!doc || typeof doc.totals !== 'object' || doc.totals === null) throw new Error(`GET ${url}: no totals object`);
  return doc;
}

// What the page shows: every [data-total] element and every force bar.
function snapshot(p) {
  return p.evaluate(() => ({
    totals: [...document.querySelectorAll('[data-total]')].map((n) => ({
      name: n.dataset.total,
      value: n.dataset.value === undefined ? null : n.dataset.value,
      text: n.textContent.trim(),
    })),
    bars: [...document.querySelectorAll('[data-force]')].map((n) => ({
      force: n.getAttribute('data-force'),
      value: n.getAttribute('data-value'),
    })),
    loads: window.__jointopsLoads,
  }));
}

// Returns null when the page agrees with `doc`, else what disagrees.
function compare(snap, doc) {
  const problems = [];
  const seen = new Set();
  for (const { name, value, text } of snap.totals) {
    seen.add(name);
    if (!(name in doc.totals)) {
      problems.push(`page shows ${name}, which the API does not have`);
      continue;
    }
    const want = String(doc.totals[name]);
    if (value !== want) problems.push(`${name}: page data-value ${value}, API ${want}`);
    else if (text !== expectedText(name, want)) problems.push(`${name}: page text "${text}", expected "${expectedText(name, want)}"`);
  }
  for (const name of NAMES) if (!seen.has(name)) problems.push(`no [data-total="${name}"] element`);
  const forces = Object.keys(doc.forces || {});
  const bars = new Map(snap.bars.map((b) => [b.force, b.value]));
  for (const f of forces) {
    if (!bars.has(f)) problems.push(`no force bar for ${f}`);
    else if (bars.get(f) !== String(doc.forces[f].arrests)) problems.push(`force bar ${f}: ${bars.get(f)}, API arrests ${doc.forces[f].arrests}`);
  }
  for (const f of bars.keys()) if (!forces.includes(f)) problems.push(`force bar ${f}, which the API does not list`);
  if (snap.loads !== 1) problems.push(`window.__jointopsLoads is ${snap.loads}, not 1`);
  return problems.length ? problems.join('; ') : null;
}

// Polls until the page agrees with the API (re-reading the API each second).
async function waitForTruth(p, label) {
  const deadline = Date.now() + LOAD_DEADLINE_MS;
  let doc = null;
  let fetchedAt = 0;
  let last = 'nothing compared yet';
  while (Date.now() < deadline) {
    if (Date.now() - fetchedAt >= 1000) {
      doc = await truth();
      fetchedAt = Date.now();
    }
    const snap = await snapshot(p);
    last = compare(snap, doc);
    if (last === null) return doc;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${label}: after ${LOAD_DEADLINE_MS / 1000} s the page still disagrees with the API: ${last}`);
}

// ------------------------------------------------------------------- stdin

function readLine(deadlineMs) {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    const timer = setTimeout(() => {
      rl.close();
      reject(new Error(`no EXPECT line within ${deadlineMs / 1000} s`));
    }, deadlineMs);
    let got = false;
    rl.once('line', (line) => {
      got = true;
      clearTimeout(timer);
      rl.close();
      resolve(line);
    });
    rl.once('close', () => {
      clearTimeout(timer);
      if (!got) reject(new Error('stdin closed before an EXPECT line'));
    });
  });
}

function parseExpect(line) {
  const parts = line.trim().split(/\s+/);
  if (parts[0] !== 'EXPECT' || parts.length < 2) throw new Error(`expected "EXPECT name=value ...", got "${line}"`);
  const pairs = {};
  for (const p of parts.slice(1)) {
    const m = /^([a-z_]+)=(-?\d+)$/.exec(p);
    if (!m) throw new Error(`bad pair "${p}" in "${line}"`);
    pairs[m[1]] = m[2].replace(/^(-?)0+(?=\d)/, '$1');
  }
  return pairs;
}

// -------------------------------------------------------------------- main

async function main() {
  fs.mkdirSync(shotDir, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives the browser a fresh temporary profile (--user-data-dir)
    // of its own and removes it on close.
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  log(`chromium ${browser.version()}`);

  // Laptop.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await ctx.newPage();
  watch(page, 'laptop');
  let loads = 0;
  page.on('load', () => {
    loads += 1;
  });
  const t0 = Date.now();
  await page.goto(pageUrl, { waitUntil: 'load', timeout: LOAD_DEADLINE_MS });
  const doc = await waitForTruth(page, 'laptop');
  log(`laptop page agrees with the API (version ${doc.version}) after ${Date.now() - t0} ms`);
  if (/token=/.test(page.url())) throw new Error(`the token is still in the address bar: ${page.url()}`);
  await page.screenshot({ path: path.join(shotDir, 'dashboard.png'), fullPage: true });

  // Phone, in a context of its own.
  const phoneCtx = await browser.newContext({
    viewport: { width: 375, height: 812 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const phone = await phoneCtx.newPage();
  watch(phone, 'phone');
  try {
    await phone.goto(pageUrl, { waitUntil: 'load', timeout: LOAD_DEADLINE_MS });
    await waitForTruth(phone, 'phone');
    await phone.screenshot({ path: path.join(shotDir, 'dashboard-phone.png'), fullPage: true });
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    if (width > 375) throw new Error(`phone: the page scrolls sideways (scrollWidth ${width} > 375)`);
  } catch (e) {
    await dumpPage(phone, 'phone');
    throw e;
  }
  await phoneCtx.close();

  // Mark this document: a reload would lose the mark.
  await page.evaluate(() => {
    window.__harnessMark = 'jointops-no-reload';
  });
  const live = await page.evaluate(() => {
    const n = document.getElementById('live-text');
    return n ? n.textContent : '?';
  });
  log(`live indicator: ${live}`);
  process.stdout.write(`READY ${doc.totals.arrests}\n`);

  const line = await readLine(STDIN_DEADLINE_MS);
  const seenFrom = Date.now();
  const want = parseExpect(line);
  const missing = Object.keys(want).filter((n) => !NAMES.includes(n));
  if (missing.length) throw new Error(`EXPECT names no total: ${missing.join(', ')}`);
  try {
    await page.waitForFunction(
      (w) => Object.entries(w).every(([name, v]) => {
        const nodes = document.querySelectorAll(`[data-total="${name}"]`);
        return nodes.length > 0 && [...nodes].every((n) => n.dataset.value === v);
      }),
      want,
      { polling: 20, timeout: UPDATE_DEADLINE_MS },
    );
  } catch (e) {
    const now = await page
      .evaluate((names) => names.map((n) => {
        const node = document.querySelector(`[data-total="${n}"]`);
        return `${n}=${node ? node.dataset.value : '(none)'}`;
      }).join(' '), Object.keys(want))
      .catch((err) => `(page unreadable: ${err.message})`);
    throw new Error(`the page did not show ${line.trim().slice(7)} within ${UPDATE_DEADLINE_MS / 1000} s; it shows ${now}`);
  }
  const ms = Date.now() - seenFrom;
  const after = await page.evaluate(() => ({ loads: window.__jointopsLoads, mark: window.__harnessMark }));
  if (after.mark !== 'jointops-no-reload' || after.loads !== 1 || loads !== 1) {
    throw new Error(`the page reloaded (mark ${after.mark}, __jointopsLoads ${after.loads}, load events ${loads})`);
  }
  const final = await snapshot(page);
  for (const [name, v] of Object.entries(want)) {
    const n = final.totals.find((t) => t.name === name);
    if (n && n.text !== expectedText(name, v)) throw new Error(`${name}: page text "${n.text}", expected "${expectedText(name, v)}"`);
  }
  process.stdout.write(`UPDATED ${ms}\n`);
  await closeBrowser();
  process.exit(0);
}

main().catch((e) => fail(e && e.message ? e.message : e));
