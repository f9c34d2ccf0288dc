// jointops dashboard: joint operation totals, live.
// ES modules, no build step, no external resources (CSP default-src 'self').
import {
  BACKOFF_MAX_MS, BACKOFF_MIN_MS, MEASURES, POLL_MS, STREAM_IDLE_MS, TIMELINE_GAP_MS,
  clock, formatMeasure, groupDigits, intStr, parseExact,
} from './format.js';
import { dayOf, drawDayChart, drawForceChart, lastDayOf } from './charts.js';

window.__jointopsLoads = (window.__jointopsLoads || 0) + 1;

(function () {
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

  function renderForceChart() {
    drawForceChart(el.forceChart, state.totals, el.forceMeasure.value || 'arrests');
  }

  function renderDayChart() {
    const op = state.operations.find((o) => o.id === state.opId);
    drawDayChart(el.dayChart, state.timeline, op, el.dayMeasure.value || 'arrests');
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
