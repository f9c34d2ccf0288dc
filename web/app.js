// jointops dashboard: joint operation totals, live.
// Plain script, no build step, no external resources (CSP default-src 'self').
'use strict';

window.__jointopsLoads = (window.__jointopsLoads || 0) + 1;

(function () {
  // ---------------------------------------------------------------- names

  // Contract §5, with the words the page uses for them.
  const MEASURES = [
    ['arrests', 'Arrests'],
    ['people_charged', 'People charged'],
    ['charges', 'Charges'],
    ['charges_drug_trafficking', 'Charges: drug supply'],
    ['charges_class_a', 'Charges: class A drug supply'],
    ['charges_class_b', 'Charges: class B drug supply'],
    ['charges_modern_slavery', 'Charges: modern slavery'],
    ['charges_weapons', 'Charges: weapons'],
    ['charges_other', 'Charges: other'],
    ['lines_closed', 'County lines closed'],
    ['people_safeguarded', 'People safeguarded'],
    ['referrals_support', 'Referrals to support providers'],
    ['referrals_nrm', 'Referrals to the NRM'],
    ['people_engaged', 'People reached at awareness events'],
    ['firearms', 'Firearms seized'],
    ['weapons', 'Other weapons seized'],
    ['drugs_class_a_mg', 'Class A drugs seized (kg)'],
    ['drugs_class_b_mg', 'Class B drugs seized (kg)'],
    ['cash_pence', 'Cash seized (£)'],
    ['joint_outcomes', 'Joint outcomes'],
    ['provisional_seizures', 'Provisional seizures'],
  ];
  const LABEL = Object.fromEntries(MEASURES);

  const POLL_MS = 2000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 10000;
  const STREAM_IDLE_MS = 60000; // no byte at all for this long: reconnect
  const TIMELINE_GAP_MS = 2000; // at most one timeline fetch (and access-log entry) per 2 s

  // ---------------------------------------------------------- exact JSON

  // Parse JSON keeping every integer exact, as its decimal string. Totals can
  // pass 2^53 (cash in pence, drugs in mg), where a JS number would round.
  const INT_KEY = '\u0000int';
  function parseExact(text) {
    const wrapped = text.replace(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g, (m) =>
      m.charCodeAt(0) === 34 || !/^-?\d+$/.test(m) ? m : '{"\\u0000int":"' + m + '"}');
    return JSON.parse(wrapped, (k, v) => {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        const keys = Object.keys(v);
        if (keys.length === 1 && keys[0] === INT_KEY) return v[INT_KEY];
      }
      return v;
    });
  }

  // An integer from the API as a canonical decimal string ("-12", "0", "345").
  function intStr(v) {
    if (typeof v === 'string' && /^-?\d+$/.test(v)) return v.replace(/^(-?)0+(?=\d)/, '$1').replace(/^-0$/, '0');
    if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
    if (typeof v === 'bigint') return v.toString();
    return '0';
  }

  // ---------------------------------------------------- formatting (exact)

  function splitSign(s) {
    return s.charAt(0) === '-' ? ['-', s.slice(1)] : ['', s];
  }
  function groupDigits(s) {
    const [sign, d] = splitSign(intStr(s));
    return sign + d.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }
  // Milligrams → kilograms with up to 3 decimals, rounded half up, from the
  // digits alone. A non-zero amount under 0.0005 kg reads "<0.001".
  function mgToKg(s) {
    const [sign, d] = splitSign(intStr(s));
    const grams = BigInt(d) / 1000n;
    const rest = BigInt(d) % 1000n;
    const rounded = grams + (rest >= 500n ? 1n : 0n); // thousandths of a kg
    if (rounded === 0n) return d === '0' ? '0' : '<0.001';
    const r = rounded.toString().padStart(4, '0');
    const whole = r.slice(0, -3);
    const frac = r.slice(-3).replace(/0+$/, '');
    return sign + groupDigits(whole) + (frac ? '.' + frac : '');
  }
  // Pence → "£214,568.00".
  function penceToPounds(s) {
    const [sign, d] = splitSign(intStr(s));
    const p = d.padStart(3, '0');
    return sign + '£' + groupDigits(p.slice(0, -2)) + '.' + p.slice(-2);
  }
  function formatMeasure(name, v) {
    if (name === 'drugs_class_a_mg' || name === 'drugs_class_b_mg') return mgToKg(v);
    if (name === 'cash_pence') return penceToPounds(v);
    return groupDigits(v);
  }
  function formatWithUnit(name, v) {
    const f = formatMeasure(name, v);
    return name === 'drugs_class_a_mg' || name === 'drugs_class_b_mg' ? f + ' kg' : f;
  }
  // For drawing only (bar lengths); never shown.
  function approx(v) {
    return Number(intStr(v));
  }

  function pad2(n) {
    return String(n).padStart(2, '0');
  }
  function clock(d) {
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  // -------------------------------------------------------------- elements

  const $ = (id) => document.getElementById(id);
  const el = {
    alert: $('alert'),
    tokenForm: $('token-form'),
    tokenMsg: $('token-msg'),
    tokenInput: $('token-input'),
    controls: $('controls'),
    opSelect: $('op-select'),
    reason: $('reason'),
    forget: $('forget-token'),
    content: $('content'),
    opTitle: $('op-title'),
    opMeta: $('op-meta'),
    live: $('live'),
    liveText: $('live-text'),
    updated: $('updated'),
    asOf: $('as-of'),
    provNote: $('provisional-note'),
    provWords: $('provisional-words'),
    forceMeasure: $('force-measure'),
    dayMeasure: $('day-measure'),
    forceChart: $('force-chart'),
    dayChart: $('day-chart'),
  };

  // ------------------------------------------------------------------ state

  const state = {
    token: null,
    operations: [],
    opId: null,
    totals: null, // last /totals document for opId
    timeline: null, // last /timeline document for opId
    gen: 0, // bumped on every (re)start; stale loops and responses stop
    streamCtrl: null,
    live: false,
    streamDown: false, // the stream failed at least once since the last start
    startedAt: 0,
    pollTimer: null,
    timelineVersion: null,
    timelineBusy: false,
    timelineAgain: false,
    timelineLast: 0,
  };

  // ------------------------------------------------------- fragment, token

  function readFragment() {
    const out = {};
    for (const part of location.hash.replace(/^#/, '').split('&')) {
      if (!part) continue;
      const i = part.indexOf('=');
      const k = i < 0 ? part : part.slice(0, i);
      const raw = i < 0 ? '' : part.slice(i + 1);
      let v = raw;
      try {
        v = decodeURIComponent(raw);
      } catch (e) {
        /* keep it raw */
      }
      out[k] = v;
    }
    return out;
  }
  function writeFragment(opId) {
    const hash = opId ? '#operation=' + encodeURIComponent(opId) : '';
    if (location.hash !== hash) history.replaceState(null, '', location.pathname + location.search + hash);
  }

  function storage(key, value) {
    try {
      if (value === undefined) return sessionStorage.getItem(key);
      if (value === null) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, value);
    } catch (e) {
      /* storage may be disabled */
    }
    return null;
  }

  function justification() {
    // A header value must be printable Latin-1 on one line.
    const typed = (el.reason.value || '').replace(/[^\x20-\x7e]/g, ' ').replace(/\s+/g, ' ').trim();
    return typed.slice(0, 200) || 'dashboard';
  }

  class HttpError extends Error {
    constructor(status) {
      super('HTTP ' + status);
      this.status = status;
    }
  }

  function headers(extra) {
    return Object.assign(
      { Authorization: 'Bearer ' + state.token, 'X-Justification': justification() },
      extra || {},
    );
  }

  async function getJson(path, signal) {
    const res = await fetch(path, { headers: headers({ Accept: 'application/json' }), cache: 'no-store', signal });
    if (!res.ok) throw new HttpError(res.status);
    return parseExact(await res.text());
  }

  function opPath(id, what) {
    return '/api/v1/operations/' + encodeURIComponent(id) + '/' + what;
  }

  // ------------------------------------------------------------- messages

  function showAlert(text) {
    el.alert.textContent = text;
    el.alert.hidden = !text;
  }

  function askForToken(message) {
    stopAll();
    state.token = null;
    storage('jointops.token', null);
    el.tokenMsg.textContent = message || '';
    el.tokenMsg.hidden = !message;
    el.tokenForm.hidden = false;
    el.controls.hidden = true;
    el.content.hidden = true;
    showAlert('');
    setLive('off', 'Not connected');
    el.tokenInput.value = '';
    el.tokenInput.focus();
  }

  // Handles an error from any request; returns true if it was an auth error.
  function handleHttpError(err) {
    if (!(err instanceof HttpError)) return false;
    if (err.status === 401) {
      askForToken('That token was not accepted.');
      return true;
    }
    if (err.status === 403) {
      stopAll();
      el.content.hidden = true;
      setLive('off', 'Not connected');
      showAlert('This token may not see that operation.');
      return true;
    }
    if (err.status === 404) {
      stopAll();
      el.content.hidden = true;
      setLive('off', 'Not connected');
      showAlert('There is no operation ' + (state.opId || '') + ' on this hub.');
      return true;
    }
    return false;
  }

  function setLive(kind, text) {
    el.live.dataset.state = kind; // on | poll | off
    el.liveText.textContent = text;
  }

  // ------------------------------------------------------------ rendering

  function renderOperationHeader() {
    const op = state.operations.find((o) => o.id === state.opId);
    el.opTitle.textContent = op && op.name ? op.name : 'Operation ' + state.opId;
    const bits = [state.opId];
    if (op) {
      if (op.starts && op.ends) bits.push(dayOf(op.starts) + ' to ' + lastDayOf(op.ends));
      if (Array.isArray(op.forces) && op.forces.length) bits.push(op.forces.length + ' forces: ' + op.forces.join(', '));
    }
    el.opMeta.textContent = bits.join(' · ');
    document.title = el.opTitle.textContent + ' – joint totals';
  }

  function renderTotals(doc) {
    const totals = doc.totals || {};
    for (const node of document.querySelectorAll('[data-total]')) {
      const name = node.dataset.total;
      const v = intStr(totals[name]);
      if (node.dataset.value !== v) {
        const first = node.dataset.value === undefined;
        node.dataset.value = v;
        node.textContent = formatMeasure(name, v);
        if (!first) flash(node);
        if (name === 'drugs_class_a_mg' || name === 'drugs_class_b_mg') {
          node.title = groupDigits(v) + ' mg';
        }
      }
    }
    const prov = intStr(totals.provisional_seizures);
    el.provNote.hidden = prov === '0';
    el.provWords.textContent = prov === '1' ? 'seizure still provisional' : 'seizures still provisional';
    el.asOf.textContent = doc.as_of ? 'Figures as of ' + doc.as_of + '.' : '';
    el.updated.textContent = clock(new Date());
    el.updated.dateTime = new Date().toISOString();
    renderForceChart();
  }

  // Mark a figure that just changed, for a few seconds.
  function flash(node) {
    node.classList.add('changed');
    clearTimeout(node.__flashTimer);
    node.__flashTimer = setTimeout(() => node.classList.remove('changed'), 4000);
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

  function renderForceChart() {
    const box = el.forceChart;
    const doc = state.totals;
    if (!doc) return;
    const measure = el.forceMeasure.value || 'arrests';
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
  function dayOf(ts) {
    return String(ts).slice(0, 10);
  }
  // The last day inside [starts, ends): the day before `ends` if it is midnight.
  function lastDayOf(ends) {
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
  function timelineDays() {
    const tl = state.timeline;
    const byDay = new Map();
    for (const d of (tl && tl.days) || []) byDay.set(d.day, d.totals || {});
    const op = state.operations.find((o) => o.id === state.opId);
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

  function renderDayChart() {
    const box = el.dayChart;
    if (!state.timeline) return;
    const measure = el.dayMeasure.value || 'arrests';
    const days = timelineDays().map(([d, t]) => [d, intStr(t[measure])]);
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

  // ------------------------------------------------------------- data flow

  function applyTotals(doc, gen) {
    if (gen !== state.gen || !doc || doc.operation !== undefined && doc.operation !== state.opId) return;
    const changed = !state.totals || state.totals.version !== doc.version;
    state.totals = doc;
    el.content.hidden = false;
    showAlert('');
    renderTotals(doc);
    if (changed || !state.timeline) refreshTimeline(gen, doc.version);
  }

  // Fetch the timeline for `version`; never more than one in flight, at most
  // one a TIMELINE_GAP_MS, and always the latest version in the end.
  async function refreshTimeline(gen, version) {
    state.timelineVersion = version;
    if (state.timelineBusy) {
      state.timelineAgain = true;
      return;
    }
    state.timelineBusy = true;
    try {
      do {
        state.timelineAgain = false;
        const wait = state.timelineLast + TIMELINE_GAP_MS - Date.now();
        if (wait > 0) await sleep(wait);
        if (gen !== state.gen) return;
        state.timelineLast = Date.now();
        try {
          const tl = await getJson(opPath(state.opId, 'timeline'));
          if (gen !== state.gen) return;
          state.timeline = tl;
          renderDayChart();
        } catch (err) {
          if (gen !== state.gen) return;
          if (handleHttpError(err)) return;
          // A network hiccup: the next version change or poll retries.
        }
      } while (state.timelineAgain && gen === state.gen);
    } finally {
      if (gen === state.gen) state.timelineBusy = false;
    }
  }

  function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
  }

  // Polling /totals every POLL_MS while the stream is down.
  function startPolling(gen) {
    if (state.pollTimer !== null || gen !== state.gen) return;
    const tick = async () => {
      if (gen !== state.gen || state.live) {
        state.pollTimer = null;
        return;
      }
      try {
        const doc = await getJson(opPath(state.opId, 'totals'));
        // A poll that lands after the stream came back is stale: drop it.
        if (gen === state.gen && !state.live) {
          applyTotals(doc, gen);
          // The stream normally answers first; say so only once it is late.
          if (state.streamDown || Date.now() - state.startedAt > 5000) {
            setLive('poll', 'Live stream down – refreshing every 2 s');
          }
        }
      } catch (err) {
        if (gen !== state.gen) return;
        if (handleHttpError(err)) return;
        setLive('off', 'Not connected – retrying');
      }
      if (gen === state.gen && !state.live) state.pollTimer = setTimeout(tick, POLL_MS);
      else state.pollTimer = null;
    };
    state.pollTimer = setTimeout(tick, 0);
  }
  function stopPolling() {
    if (state.pollTimer !== null) clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }

  // Server-sent events over fetch (EventSource cannot send Authorization).
  async function streamLoop(gen) {
    let backoff = BACKOFF_MIN_MS;
    while (gen === state.gen) {
      const ctrl = new AbortController();
      state.streamCtrl = ctrl;
      let idleTimer = null;
      const kick = () => {
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => ctrl.abort(), STREAM_IDLE_MS);
      };
      try {
        kick();
        const res = await fetch(opPath(state.opId, 'stream'), {
          headers: headers({ Accept: 'text/event-stream' }),
          cache: 'no-store',
          signal: ctrl.signal,
        });
        if (!res.ok) throw new HttpError(res.status);
        if (!res.body) throw new Error('no body');
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        let event = '';
        let data = [];
        let gotEvent = false;
        for (;;) {
          const { value, done } = await reader.read();
          if (gen !== state.gen) {
            ctrl.abort();
            return;
          }
          if (done) break;
          kick();
          buf += decoder.decode(value, { stream: true });
          // Lines end in \r\n, \n or \r; keep a trailing \r until we know.
          let m;
          while ((m = /\r\n|\n|\r(?=[^\n])/.exec(buf))) {
            const line = buf.slice(0, m.index);
            buf = buf.slice(m.index + m[0].length);
            if (line === '') {
              if (data.length && (event || 'message') === 'totals') {
                const doc = parseExact(data.join('\n'));
                if (!state.live) {
                  state.live = true;
                  stopPolling();
                  setLive('on', 'Live');
                }
                gotEvent = true;
                backoff = BACKOFF_MIN_MS;
                applyTotals(doc, gen);
              }
              event = '';
              data = [];
              continue;
            }
            if (line.charAt(0) === ':') continue; // comment / keep-alive
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let val = c < 0 ? '' : line.slice(c + 1);
            if (val.charAt(0) === ' ') val = val.slice(1);
            if (field === 'event') event = val;
            else if (field === 'data') data.push(val);
          }
        }
        if (!gotEvent) throw new Error('stream closed before any event');
        throw new Error('stream closed');
      } catch (err) {
        if (gen !== state.gen) return;
        if (handleHttpError(err)) return;
      } finally {
        clearTimeout(idleTimer);
      }
      // Down: poll meanwhile, and try the stream again after a backoff.
      state.live = false;
      state.streamDown = true;
      setLive('poll', 'Live stream down – refreshing every 2 s');
      startPolling(gen);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  function stopAll() {
    state.gen += 1;
    if (state.streamCtrl) state.streamCtrl.abort();
    state.streamCtrl = null;
    stopPolling();
    state.live = false;
    state.streamDown = false;
    state.startedAt = Date.now();
    state.timelineBusy = false;
    state.timelineAgain = false;
  }

  function startOperation(opId) {
    stopAll();
    const gen = state.gen;
    state.opId = opId;
    state.totals = null;
    state.timeline = null;
    writeFragment(opId);
    if (el.opSelect.value !== opId) el.opSelect.value = opId;
    renderOperationHeader();
    // Never show one operation's figures under another's name.
    el.content.hidden = true;
    for (const node of document.querySelectorAll('[data-total]')) {
      delete node.dataset.value;
      node.textContent = '–';
    }
    el.forceChart.replaceChildren();
    el.dayChart.replaceChildren();
    setLive('poll', 'Connecting…');
    // First figures come from whichever answers first; the stream takes over.
    startPolling(gen);
    streamLoop(gen);
  }

  async function start() {
    stopAll();
    const gen = state.gen;
    el.tokenForm.hidden = true;
    showAlert('');
    setLive('poll', 'Connecting…');
    let list;
    try {
      list = await getJson('/api/v1/operations');
    } catch (err) {
      if (gen !== state.gen) return;
      if (handleHttpError(err)) return;
      setLive('off', 'Not connected');
      showAlert('The hub could not be reached. Retrying…');
      setTimeout(() => gen === state.gen && start(), 3000);
      return;
    }
    if (gen !== state.gen) return;
    state.operations = Array.isArray(list.operations) ? list.operations : [];
    el.opSelect.replaceChildren(
      ...state.operations.map((o) => {
        const opt = document.createElement('option');
        opt.value = o.id;
        opt.textContent = o.name ? o.name + ' (' + o.id + ')' : o.id;
        return opt;
      }),
    );
    el.controls.hidden = false;
    const wanted = readFragment().operation;
    const opId = wanted || (state.operations[0] && state.operations[0].id);
    if (!opId) {
      setLive('off', 'Not connected');
      showAlert('This token may not see any operation.');
      return;
    }
    if (wanted && !state.operations.some((o) => o.id === wanted)) {
      const opt = document.createElement('option');
      opt.value = wanted;
      opt.textContent = wanted;
      el.opSelect.appendChild(opt);
    }
    startOperation(opId);
  }

  // ---------------------------------------------------------------- wiring

  function fillMeasureSelect(select, key) {
    select.replaceChildren(
      ...MEASURES.map(([name, label]) => {
        const opt = document.createElement('option');
        opt.value = name;
        opt.textContent = label;
        return opt;
      }),
    );
    select.value = storage(key) || 'arrests';
    if (!select.value) select.value = 'arrests';
    select.addEventListener('change', () => {
      storage(key, select.value);
      if (select === el.forceMeasure) renderForceChart();
      else renderDayChart();
    });
  }

  function init() {
    fillMeasureSelect(el.forceMeasure, 'jointops.forceMeasure');
    fillMeasureSelect(el.dayMeasure, 'jointops.dayMeasure');
    el.reason.value = storage('jointops.reason') || '';
    el.reason.addEventListener('change', () => {
      storage('jointops.reason', el.reason.value);
      // The open stream was authorised with the old reason: reopen it.
      if (state.token && state.opId) startOperation(state.opId);
    });

    el.tokenForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const t = el.tokenInput.value.trim();
      if (!t) return;
      state.token = t;
      storage('jointops.token', t);
      el.tokenInput.value = '';
      start();
    });
    el.forget.addEventListener('click', () => askForToken(''));
    el.opSelect.addEventListener('change', () => startOperation(el.opSelect.value));
    window.addEventListener('hashchange', () => {
      const f = readFragment();
      if (f.token) {
        state.token = f.token;
        storage('jointops.token', f.token);
        writeFragment(f.operation || state.opId);
        start();
      } else if (f.operation && f.operation !== state.opId && state.token) {
        if (!state.operations.some((o) => o.id === f.operation)) start();
        else startOperation(f.operation);
      }
    });
    let resizeTimer = null;
    let lastWidth = window.innerWidth;
    window.addEventListener('resize', () => {
      if (window.innerWidth === lastWidth) return;
      lastWidth = window.innerWidth;
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        renderForceChart();
        renderDayChart();
      }, 150);
    });

    // The token comes from the fragment (never sent to the server) or from
    // this tab's session storage; it is taken out of the address bar at once.
    const frag = readFragment();
    if (frag.token) {
      state.token = frag.token;
      storage('jointops.token', frag.token);
      writeFragment(frag.operation || '');
    } else {
      state.token = storage('jointops.token');
    }
    if (state.token) start();
    else askForToken('');
  }

  init();
})();
