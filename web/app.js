// jointops dashboard: joint operation totals, live, with the hub's freshness.
// ES modules, no build step, no external resources (CSP default-src 'self').
// State, rendering and wiring here; the live data flow (stream, polling,
// freshness) in live.js; text in format.js; drawing (charts and tables) in
// charts.js.
import {
  DISPLAY_ZONE, HttpError, MEASURES, POLL_MS, TIMELINE_GAP_MS, dataAgeWords, formatMeasure, groupDigits, intStr,
  liaisonWords, localToRfc3339, makeClient, opPath, parseFragment, query, rollupWords, toLocalInput, when,
} from './format.js';
import {
  dayOf, drawDayChart, drawForceChart, h, lastDayOf, makeTools, renderForceStatus, renderOwnForce,
} from './charts.js';
import { makeLive } from './live.js';

window.__jointopsLoads = (window.__jointopsLoads || 0) + 1;

(function () {
  // -------------------------------------------------------------- elements

  const $ = (id) => document.getElementById(id);
  // el.tokenForm is #token-form: element ids in camel case, looked up once.
  const el = new Proxy({}, {
    get: (cache, k) => cache[k] || (cache[k] = $(k.replace(/[A-Z]/g, (m) => '-' + m.toLowerCase()))),
  });

  // ------------------------------------------------------------------ state

  const state = {
    token: null,
    me: null, // /whoami, or null on a hub without it
    operations: [],
    opId: null,
    asOf: null, // RFC 3339: the figures are as of this moment, not live
    totals: null, // last /totals document for opId
    timeline: null, // last /timeline document for opId
    status: null, // last /operations/{id}/status (or the hub's /status)
    statusKey: '',
    dlKey: null,
    gen: 0, // bumped on every (re)start; stale loops and responses stop
    streamCtrl: null,
    live: false,
    streamDown: false, // the stream failed at least once since the last start
    startedAt: 0,
    lastAnswer: 0, // when the hub last answered this page
    pollTimer: null,
    statusTimer: null,
    statusAt: 0, // when the live stream last brought the status
    timelineVersion: null,
    timelineBusy: false,
    timelineAgain: false,
    timelineLast: 0,
  };

  // ------------------------------------------------------- fragment, token

  const readFragment = () => parseFragment(location.hash);
  // The address names the operation and, for figures that can be cited, the moment.
  function writeFragment(opId) {
    let hash = opId ? '#operation=' + encodeURIComponent(opId) : '';
    if (opId && state.asOf) hash += '&as_of=' + encodeURIComponent(state.asOf);
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
    // One line; a header value must be Latin-1, so text beyond ASCII (a
    // reason in Welsh) goes percent-encoded as UTF-8 (RFC 8187), which the
    // hub decodes and keeps as typed.
    const typed = (el.reason.value || '').replace(/[\u0000-\u001f\u007f]/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);
    if (!typed) return 'dashboard';
    return /^[\x20-\x7e]*$/.test(typed) ? typed : "utf-8''" + encodeURIComponent(typed);
  }

  // ------------------------------------------------------------------ HTTP

  // Any answer at all means the connection works, whatever its status.
  const client = makeClient(
    () => ({ Authorization: 'Bearer ' + state.token, 'X-Justification': justification() }),
    () => {
      state.lastAnswer = Date.now();
    },
  );
  const { getJson, headers } = client;

  const isLiaison = () => !!(state.me && state.me.role === 'force' && state.me.force);
  const currentOp = () => state.operations.find((o) => o.id === state.opId);
  // The forces to show: a coordinator sees every force of the operation
  // (with zeros for those that sent nothing), a liaison their own.
  function forceList() {
    if (isLiaison()) return [state.me.force];
    const op = currentOp();
    return (op && Array.isArray(op.forces)) ? op.forces : [];
  }

  // Hoisted functions only: the tools call back into them later.
  const tools = makeTools({ el, state, client, authFailed: (e) => authFailed(e), isLiaison, currentOp, momentFrom: (i) => momentFrom(i) });
  // Function declarations below are hoisted: the live flow may call them.
  const live = makeLive({
    state, getJson, headers, applyTotals: (d, g) => applyTotals(d, g), applyStatus: (d) => applyStatus(d),
    renderFreshness: () => renderFreshness(), setLive: (k, t) => setLive(k, t), connectedWords: () => connectedWords(),
    handleHttpError: (e) => handleHttpError(e), authFailed: (e) => authFailed(e), connectionLost: () => connectionLost(),
  });
  const { startStatus, startPolling, stopPolling, streamLoop } = live;

  // ------------------------------------------------------------- messages

  function showAlert(text) {
    el.alert.textContent = text;
    el.alert.hidden = !text;
  }

  function askForToken(message) {
    stopAll();
    state.token = null;
    state.me = null;
    storage('jointops.token', null);
    el.tokenMsg.textContent = message || '';
    el.tokenMsg.hidden = !message;
    el.tokenForm.hidden = false;
    el.controls.hidden = true;
    el.content.hidden = true;
    tools.closeFigures();
    showAlert('');
    setLive('off', 'Not connected');
    el.tokenInput.value = '';
    el.tokenInput.focus();
  }

  // A 401 anywhere: ask for a token again (true), else leave it to the caller.
  const authFailed = (err) => err instanceof HttpError && err.status === 401 && handleHttpError(err);

  // Handles an error from any request; returns true if it was an auth error.
  function handleHttpError(err) {
    if (!(err instanceof HttpError)) return false;
    if (err.status === 401) {
      askForToken('That token was not accepted.');
      return true;
    }
    if (err.status === 403 || err.status === 404) {
      stopAll();
      el.content.hidden = true;
      setLive('off', 'Not connected');
      showAlert(err.status === 403 ? 'This token may not see that operation.' : 'There is no operation ' + (state.opId || '') + ' on this hub.');
      return true;
    }
    return false;
  }

  // --------------------------------------------------------- freshness

  // One line of the status: a state (its colour) and words; written only
  // when they change, since the status is a live region.
  function setFresh(line, textEl, kind, text) {
    if (line.dataset.state !== kind) line.dataset.state = kind;
    if (textEl.textContent !== text) textEl.textContent = text;
  }

  // (a) This page's connection to the hub.
  function setLive(kind, text) {
    setFresh(el.live, el.liveText, kind, text); // on | poll | off
  }
  function connectionLost() {
    const since = state.lastAnswer ? ' since ' + when(state.lastAnswer) : '';
    setLive('off', 'not connected to the hub' + since + ' – retrying');
  }

  // (b) The hub's rollup and (c) the age of this operation's data.
  function renderFreshness() {
    const st = state.status;
    const missing = state.statusMissing ? 'not reported by this hub' : 'not known yet';
    setFresh(el.rollup, el.rollupText, ...(st ? rollupWords(st.rollup || {}) : ['unknown', missing]));
    setFresh(el.dataAge, el.dataAgeText, ...(st ? dataAgeWords(st) : ['unknown', missing]));
  }

  function applyStatus(doc) {
    state.status = doc;
    if (el.live.dataset.state === 'off') setLive(state.live ? 'on' : 'poll', connectedWords());
    const key = JSON.stringify([doc.forces, doc.silent_after_hours]);
    if (key !== state.statusKey) {
      state.statusKey = key;
      if (doc.silent_after_hours !== undefined) el.silentAfter.textContent = intStr(doc.silent_after_hours);
      if (Array.isArray(doc.forces)) renderForceStatus(el.forceStatus, doc, forceList());
      // New refused records show in the panel without a reload.
      // (The first status only notes them: startOperation fetched them.)
      const dl = JSON.stringify((doc.forces || []).map((f) => f.dead_letters));
      if (state.dlKey !== null && dl !== state.dlKey) tools.refreshDeadLetters(state.gen);
      state.dlKey = dl;
    }
    renderLiaison();
  }

  function connectedWords() {
    if (state.asOf) return 'connected to the hub; showing figures as of a past moment (not live)';
    return state.live ? 'connected to the hub, live stream' : 'connected to the hub, refreshing every 2 s';
  }

  // ------------------------------------------------------------ rendering

  function renderOperationHeader() {
    const op = currentOp();
    el.opTitle.textContent = op && op.name ? op.name : 'Operation ' + state.opId;
    const bits = [state.opId];
    if (op) {
      if (op.starts && op.ends) bits.push(dayOf(op.starts) + ' to ' + lastDayOf(op.ends));
      if (Array.isArray(op.forces) && op.forces.length) bits.push(op.forces.length + ' forces: ' + op.forces.join(', '));
    }
    el.opMeta.textContent = bits.join(' · ');
    document.title = el.opTitle.textContent + ' – joint totals';
  }

  function renderWhoami() {
    const me = state.me;
    el.whoami.textContent = !me ? ''
      : 'Signed in as ' + (me.label || 'unnamed') + ' (' + me.token_id + '), ' + (me.role === 'force' ? me.force + ' liaison' : 'coordinator');
    // Only coordinators publish; the API refuses a liaison anyway.
    el.publishPanel.hidden = isLiaison();
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
    el.provisionalNote.hidden = prov === '0';
    el.provisionalWords.textContent = prov === '1' ? 'seizure still provisional' : 'seizures still provisional';
    el.asOf.textContent = doc.as_of ? 'Figures as of ' + when(doc.as_of) + ' (' + doc.as_of + ').'
      : doc.generated_at ? 'Figures of ' + when(doc.generated_at) + '.' : '';
    renderForceChart();
    renderLiaison();
    if (!el.figuresView.hidden) tools.renderFigures();
  }

  // Mark a figure that just changed, for a few seconds.
  function flash(node) {
    node.classList.add('changed');
    clearTimeout(node.__flashTimer);
    node.__flashTimer = setTimeout(() => node.classList.remove('changed'), 4000);
  }

  function renderForceChart() {
    drawForceChart(el.forceChart, state.totals, el.forceMeasure.value || 'arrests', forceList());
  }

  function renderDayChart() {
    drawDayChart(el.dayChart, state.timeline, currentOp(), el.dayMeasure.value || 'arrests');
  }

  // A liaison sees their own force's rows only: say so, and show their
  // force in full beside the joint totals.
  function renderLiaison() {
    const liaison = isLiaison();
    el.liaisonNote.hidden = !liaison;
    el.ownForce.hidden = !liaison;
    if (!liaison) return;
    el.liaisonNote.textContent = liaisonWords(state.me.force, state.status && state.status.hidden_forces);
    if (state.totals) renderOwnForce(el.ownTable, state.totals, state.me.force);
  }

  function renderNotLive() {
    el.notLive.hidden = !state.asOf;
    el.content.classList.toggle('is-not-live', !!state.asOf);
    if (state.asOf) {
      el.notLiveText.textContent = 'Not live: these are the figures as of ' + when(state.asOf) + ' (' + state.asOf +
        '). Later reports and corrections are not in them.';
    }
  }

  // ------------------------------------------------------------- data flow

  function applyTotals(doc, gen) {
    if (gen !== state.gen || !doc || doc.operation !== undefined && doc.operation !== state.opId) return;
    const changed = !state.totals || state.totals.version !== doc.version;
    state.totals = doc;
    el.content.hidden = !el.figuresView.hidden;
    showAlert('');
    renderTotals(doc);
    if (!state.asOf && (changed || !state.timeline)) refreshTimeline(gen, doc.version);
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

  // Figures as of a moment: read once (they cannot change), no stream.
  async function loadAsOf(gen) {
    const q = query({ as_of: state.asOf });
    try {
      const [doc, tl] = await Promise.all([getJson(opPath(state.opId, 'totals' + q)), getJson(opPath(state.opId, 'timeline' + q))]);
      if (gen !== state.gen) return;
      setLive('on', connectedWords());
      state.timeline = tl;
      applyTotals(doc, gen);
      renderDayChart();
    } catch (err) {
      if (gen !== state.gen) return;
      if (err instanceof HttpError && err.status === 400) {
        showAlert('Those figures cannot be shown: ' + (err.message || 'the hub refused the moment') + '.');
        return;
      }
      if (handleHttpError(err)) return;
      connectionLost();
      await sleep(POLL_MS);
      if (gen === state.gen) loadAsOf(gen);
    }
  }
  function stopAll() {
    state.gen += 1;
    if (state.streamCtrl) state.streamCtrl.abort();
    state.streamCtrl = null;
    stopPolling();
    clearTimeout(state.statusTimer);
    state.live = false;
    state.streamDown = false;
    state.startedAt = Date.now();
    state.timelineBusy = false;
    state.timelineAgain = false;
  }

  function startOperation(opId) {
    const sameOp = opId === state.opId;
    stopAll();
    const gen = state.gen;
    state.opId = opId;
    state.totals = null;
    state.timeline = null;
    if (!sameOp) {
      state.status = null;
      state.statusKey = '';
    }
    state.dlKey = null;
    writeFragment(opId);
    if (el.opSelect.value !== opId) el.opSelect.value = opId;
    renderOperationHeader();
    renderNotLive();
    // Never show one operation's figures under another's name.
    el.content.hidden = true;
    for (const node of document.querySelectorAll('[data-total]')) {
      delete node.dataset.value;
      node.textContent = '–';
    }
    el.forceChart.replaceChildren();
    el.dayChart.replaceChildren();
    renderForceStatus(el.forceStatus, sameOp ? state.status : null, forceList());
    setLive('poll', 'connecting…');
    startStatus(gen);
    tools.refreshDeadLetters(gen);
    if (state.asOf) {
      loadAsOf(gen);
      return;
    }
    // First figures come from whichever answers first; the stream takes over.
    startPolling(gen);
    streamLoop(gen);
  }

  function setAsOf(iso) {
    state.asOf = iso;
    if (iso) el.asofInput.value = toLocalInput(Date.parse(iso), el.momentZone.value);
    startOperation(state.opId);
  }

  async function start() {
    stopAll();
    const gen = state.gen;
    el.tokenForm.hidden = true;
    showAlert('');
    setLive('poll', 'connecting…');
    let list;
    try {
      list = await getJson('/api/v1/operations');
    } catch (err) {
      if (gen !== state.gen) return;
      if (handleHttpError(err)) return;
      connectionLost();
      showAlert('The hub could not be reached. Retrying…');
      setTimeout(() => gen === state.gen && start(), 3000);
      return;
    }
    // Who this token is decides what the page offers (a liaison's view).
    state.me = await getJson('/api/v1/whoami').catch(() => null);
    if (gen !== state.gen) return;
    renderWhoami();
    state.operations = Array.isArray(list.operations) ? list.operations : [];
    el.opSelect.replaceChildren(...state.operations.map((o) => h('option', { value: o.id }, o.name ? o.name + ' (' + o.id + ')' : o.id)));
    el.controls.hidden = false;
    const frag = readFragment();
    const wanted = frag.operation;
    const opId = wanted || (state.operations[0] && state.operations[0].id);
    if (!opId) {
      setLive('off', 'connected, but this token may not see any operation');
      showAlert('This token may not see any operation.');
      return;
    }
    if (wanted && !state.operations.some((o) => o.id === wanted)) el.opSelect.appendChild(h('option', { value: wanted }, wanted));
    state.asOf = frag.as_of && !Number.isNaN(Date.parse(frag.as_of)) ? new Date(frag.as_of).toISOString() : null;
    startOperation(opId);
  }

  // ---------------------------------------------------------------- wiring

  function fillMeasureSelect(select, key) {
    select.replaceChildren(...MEASURES.map(([name, label]) => h('option', { value: name }, label)));
    select.value = storage(key) || 'arrests';
    if (!select.value) select.value = 'arrests';
    select.addEventListener('change', () => {
      storage(key, select.value);
      if (select === el.forceMeasure) renderForceChart();
      else renderDayChart();
    });
  }

  // A moment typed in the chosen zone, as RFC 3339; or null, said so.
  function momentFrom(input) {
    const iso = localToRfc3339(input.value, el.momentZone.value);
    if (!iso) showAlert('Enter a date and time.');
    else if (Date.parse(iso) > Date.now()) {
      showAlert('That moment, ' + when(iso) + ', is in the future.');
      return null;
    }
    return iso;
  }

  function wireMoments() {
    el.momentZone.value = storage('jointops.zone') || DISPLAY_ZONE;
    el.momentZone.addEventListener('change', () => storage('jointops.zone', el.momentZone.value));
    el.asofForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const iso = momentFrom(el.asofInput);
      if (iso) setAsOf(iso);
    });
    el.backLive.addEventListener('click', () => setAsOf(null));
    tools.wire();
  }

  function init() {
    fillMeasureSelect(el.forceMeasure, 'jointops.forceMeasure');
    fillMeasureSelect(el.dayMeasure, 'jointops.dayMeasure');
    wireMoments();
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
    el.forgetToken.addEventListener('click', () => askForToken(''));
    el.opSelect.addEventListener('change', () => {
      state.asOf = null;
      startOperation(el.opSelect.value);
    });
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
      state.asOf = frag.as_of || null;
      writeFragment(frag.operation || '');
      if (frag.as_of) history.replaceState(null, '', location.pathname + location.search + location.hash + '&as_of=' + encodeURIComponent(frag.as_of));
    } else {
      state.token = storage('jointops.token');
    }
    if (state.token) start();
    else askForToken('');
  }

  init();
})();
