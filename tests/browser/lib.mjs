// The browser harness's tools: Chromium, the API's own answers (the truth the
// page is checked against), the page's formatting written again
// independently, waits with deadlines, axe-core, downloads and PDFs.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const CHROMIUM = process.env.JOINTOPS_CHROMIUM || '/usr/bin/chromium';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const AXE_SOURCE = fs.readFileSync(path.join(HERE, 'node_modules/axe-core/axe.min.js'), 'utf8');
export const LOAD_DEADLINE_MS = 20_000;
export const NAMES = [
  'arrests', 'people_charged', 'charges', 'charges_drug_trafficking', 'charges_class_a', 'charges_class_b',
  'charges_modern_slavery', 'charges_weapons', 'charges_other', 'lines_closed', 'people_safeguarded',
  'referrals_support', 'referrals_nrm', 'people_engaged', 'firearms', 'weapons', 'drugs_class_a_mg',
  'drugs_class_b_mg', 'cash_pence', 'joint_outcomes', 'provisional_seizures',
];
// A time as the page must show it: a date and a zone.
export const DATED = /\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}:\d{2} (GMT|BST|UTC)\b/;

export const log = (...a) => process.stderr.write(`[dashboard] ${a.join(' ')}\n`);

// ------------------------------------------------------- browser, failure

let browser = null;
const pages = new Map(); // label → page, dumped on failure
const consoleLines = [];

export async function launch() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives the browser a fresh temporary profile of its own and removes it on close.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  log(`chromium ${browser.version()}`);
}

// A page in a context of its own (its own session storage, so its own token).
export async function openPage(label, viewport, phone) {
  const ctx = await browser.newContext(phone
    ? { viewport, deviceScaleFactor: 2, isMobile: true, hasTouch: true, acceptDownloads: true }
    : { viewport, acceptDownloads: true });
  const page = await ctx.newPage();
  pages.set(label, page);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(`${label} console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleLines.push(`${label} pageerror: ${e.message}`));
  page.on('requestfailed', (r) => consoleLines.push(`${label} requestfailed: ${r.method()} ${r.url()} ${r.failure() ? r.failure().errorText : ''}`));
  page.on('response', (r) => {
    if (r.status() >= 400) consoleLines.push(`${label} HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return page;
}
export async function closePage(label) {
  const page = pages.get(label);
  pages.delete(label);
  if (page) await page.context().close();
}

async function pageText(p) {
  return p.evaluate(() => {
    const chosen = [...document.body.querySelectorAll('select')].map((s) => (s.selectedOptions[0] ? s.selectedOptions[0].textContent : ''));
    const copy = document.body.cloneNode(true);
    copy.querySelectorAll('select').forEach((s, i) => s.replaceWith(`[${chosen[i]}]`));
    document.body.appendChild(copy);
    const out = copy.innerText;
    copy.remove();
    return out;
  });
}

let failing = false;
export async function fail(reason) {
  if (failing) return;
  failing = true;
  process.stdout.write(`FAIL ${String(reason).replace(/\s+/g, ' ').trim()}\n`);
  for (const [label, p] of pages) {
    const text = await pageText(p).catch((e) => `(unreadable: ${e.message})`);
    process.stderr.write(`----- ${label} page text -----\n${text}\n`);
  }
  process.stderr.write(`----- console errors, page errors, failed requests -----\n${consoleLines.join('\n') || '(none)'}\n`);
  await closeBrowser();
  process.exit(1);
}
export async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
}

// ------------------------------------------------------------ exact numbers

// JSON with every integer kept as its exact decimal string (totals may pass 2^53).
export function parseExact(text) {
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
export function expectedText(name, value) {
  const v = BigInt(value);
  const neg = v < 0n;
  const a = neg ? -v : v;
  if (name === 'cash_pence') return `${neg ? '-' : ''}£${group(a / 100n)}.${(a % 100n).toString().padStart(2, '0')}`;
  if (name === 'drugs_class_a_mg' || name === 'drugs_class_b_mg') {
    const thousandths = (a + 500n) / 1000n; // grams, rounded half up
    if (thousandths === 0n) return a === 0n ? '0' : '<0.001';
    const frac = (thousandths % 1000n).toString().padStart(3, '0').replace(/0+$/, '');
    return `${neg ? '-' : ''}${group(thousandths / 1000n)}${frac ? `.${frac}` : ''}`;
  }
  return group(v);
}
export const withUnit = (name, v) => expectedText(name, v) + (name.endsWith('_mg') ? ' kg' : '');

// ------------------------------------------------------------ the API truth

export function makeApi(base, operation) {
  return async function api(token, what, { raw } = {}) {
    const url = what.startsWith('/') ? `${base}${what}` : `${base}/api/v1/operations/${encodeURIComponent(operation)}/${what}`;
    const res = await fetch(url, {
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', 'X-Justification': 'dashboard browser test' },
    });
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status} ${await res.text()}`);
    return raw ? res : parseExact(await res.text());
  };
}

// What the page shows: every [data-total] element and every force bar.
export function snapshot(p) {
  return p.evaluate(() => ({
    totals: [...document.querySelectorAll('[data-total]')].map((n) => ({
      name: n.dataset.total,
      value: n.dataset.value === undefined ? null : n.dataset.value,
      text: n.textContent.trim(),
    })),
    bars: [...document.querySelectorAll('[data-force]')].map((n) => ({ force: n.getAttribute('data-force'), value: n.getAttribute('data-value') })),
    loads: window.__jointopsLoads,
  }));
}

// Null when the page agrees with `doc`, else what disagrees. `forces`: the
// bars the page must draw (the API's forces with figures, plus those of the
// operation without any, as zeros).
export function compare(snap, doc, forces) {
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
  const bars = new Map(snap.bars.map((b) => [b.force, b.value]));
  const want = [...new Set([...forces, ...Object.keys(doc.forces || {})])];
  for (const f of want) {
    const v = doc.forces && doc.forces[f] ? String(doc.forces[f].arrests) : '0';
    if (!bars.has(f)) problems.push(`no force bar for ${f}`);
    else if (bars.get(f) !== v) problems.push(`force bar ${f}: ${bars.get(f)}, API arrests ${v}`);
  }
  for (const f of bars.keys()) if (!want.includes(f)) problems.push(`force bar ${f}, which should not be shown`);
  if (snap.loads !== 1) problems.push(`window.__jointopsLoads is ${snap.loads}, not 1`);
  return problems.length ? problems.join('; ') : null;
}

// Polls until the page agrees with the API's `what` (re-read each second).
export async function waitForTruth(p, label, api, token, what, forces) {
  const deadline = Date.now() + LOAD_DEADLINE_MS;
  let doc = null;
  let fetchedAt = 0;
  let last = 'nothing compared yet';
  while (Date.now() < deadline) {
    if (Date.now() - fetchedAt >= 1000) {
      doc = await api(token, what);
      fetchedAt = Date.now();
    }
    last = compare(await snapshot(p), doc, forces);
    if (last === null) return doc;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${label}: after ${LOAD_DEADLINE_MS / 1000} s the page still disagrees with the API's ${what}: ${last}`);
}

// Waits for a condition in the page; the failure names it and what was seen.
export async function waitFor(p, label, what, fn, arg, timeout = 15_000) {
  try {
    return await p.waitForFunction(fn, arg, { polling: 100, timeout });
  } catch (e) {
    throw new Error(`${label}: ${what} did not happen within ${timeout / 1000} s (${e.message.split('\n')[0]})`);
  }
}
export const text = (p, sel) => p.$eval(sel, (n) => n.textContent.replace(/\s+/g, ' ').trim());

export function must(cond, message) {
  if (!cond) throw new Error(message);
}

// ------------------------------------------------ accessibility, files

// axe-core, evaluated in the page (the page's CSP allows no injected <script>).
export async function axeCheck(p, label) {
  if (!(await p.evaluate(() => typeof window.axe === 'object'))) await p.evaluate(AXE_SOURCE);
  const violations = await p.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 4).map((n) => n.target.join(' ')).join(', ')}`);
  });
  must(!violations.length, `${label}: axe-core finds ${violations.length} violation(s): ${violations.join('; ')}`);
  log(`${label}: axe-core finds no violations (wcag2a, wcag2aa, wcag21a, wcag21aa)`);
}

// Clicks `selector` and returns the file the page saves: its name and text.
export async function downloadFrom(p, selector) {
  const [d] = await Promise.all([p.waitForEvent('download', { timeout: 15_000 }), p.click(selector)]);
  const file = await d.path();
  return { name: d.suggestedFilename(), text: fs.readFileSync(file, 'utf8') };
}

// Pages in a PDF: its page objects (not the /Pages tree).
export function pdfPages(buf) {
  return (buf.toString('latin1').match(/\/Type\s*\/Page(?![a-z])/g) || []).length;
}

export async function shot(p, shots, name, opts) {
  await p.screenshot(Object.assign({ path: path.join(shots, name) }, opts || {}));
}

// ------------------------------------------------------------------- stdin

const queue = [];
const waiting = [];
let stdinClosed = false;
const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', (line) => (waiting.length ? waiting.shift().resolve(line) : queue.push(line)));
rl.on('close', () => {
  stdinClosed = true;
  while (waiting.length) waiting.shift().reject(new Error('stdin closed'));
});
export function nextLine(deadlineMs) {
  if (queue.length) return Promise.resolve(queue.shift());
  if (stdinClosed) return Promise.reject(new Error('stdin closed'));
  return new Promise((resolve, reject) => {
    const w = { resolve, reject };
    const timer = setTimeout(() => {
      waiting.splice(waiting.indexOf(w), 1);
      reject(new Error(`no line on stdin within ${deadlineMs / 1000} s`));
    }, deadlineMs);
    w.resolve = (l) => (clearTimeout(timer), resolve(l));
    w.reject = (e) => (clearTimeout(timer), reject(e));
    waiting.push(w);
  });
}
export function closeStdin() {
  rl.close();
}
