// The page's live data flow: the operation's totals on a server-sent
// stream (over fetch: EventSource cannot send Authorization), polling
// while it is down, and the hub's freshness, which the stream also carries
// (so an open page does not poll it). app.js owns the state and renders;
// this module only moves documents to its callbacks.
import { BACKOFF_MAX_MS, BACKOFF_MIN_MS, HttpError, POLL_MS, STREAM_IDLE_MS, opPath, parseExact, sseParser } from './format.js';

// `ctx`: { state, getJson, headers, applyTotals, applyStatus, renderFreshness,
// setLive, connectedWords, handleHttpError, authFailed, connectionLost }.
export function makeLive(ctx) {
  const {
    state, getJson, headers, applyTotals, applyStatus, renderFreshness, setLive, connectedWords, handleHttpError,
    authFailed, connectionLost,
  } = ctx;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // The operation's status every POLL_MS, polled only while the stream does
  // not bring it: a stopped rollup shows within the API's stale_after_ms
  // plus one interval. On a hub without the operation's status, falls back
  // to the hub's; without either, says so.
  function startStatus(gen) {
    const tick = async () => {
      if (gen !== state.gen) return;
      if (state.live && Date.now() - state.statusAt < 3 * POLL_MS) {
        renderFreshness();
        state.statusTimer = setTimeout(tick, POLL_MS);
        return;
      }
      let doc = null;
      try {
        doc = await getJson(opPath(state.opId, 'status'));
      } catch (err) {
        if (gen !== state.gen) return;
        if (authFailed(err)) return;
        if (err instanceof HttpError && err.status === 404) {
          doc = await getJson('/api/v1/status').catch(() => null);
          state.statusMissing = !doc;
        } else if (!(err instanceof HttpError)) connectionLost();
      }
      if (gen !== state.gen) return;
      if (doc) applyStatus(doc);
      renderFreshness();
      state.statusTimer = setTimeout(tick, POLL_MS);
    };
    state.statusTimer = setTimeout(tick, 0);
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
          if (state.streamDown || Date.now() - state.startedAt > 5000) setLive('poll', connectedWords());
        }
      } catch (err) {
        if (gen !== state.gen) return;
        if (handleHttpError(err)) return;
        connectionLost();
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
        let gotEvent = false;
        const feed = sseParser((name, data) => {
          if (gen !== state.gen) return;
          if (name === 'status') {
            // The stream carries the status every 2 s: no poll (and no
            // access-log entry) needed while it flows.
            state.statusAt = Date.now();
            applyStatus(parseExact(data));
            renderFreshness();
            return;
          }
          if (name !== 'totals') return;
          const doc = parseExact(data);
          if (!state.live) {
            state.live = true;
            stopPolling();
            setLive('on', connectedWords());
          }
          gotEvent = true;
          backoff = BACKOFF_MIN_MS;
          applyTotals(doc, gen);
        });
        for (;;) {
          const { value, done } = await reader.read();
          if (gen !== state.gen) {
            ctrl.abort();
            return;
          }
          if (done) break;
          kick();
          feed(decoder.decode(value, { stream: true }));
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
      setLive('poll', connectedWords());
      startPolling(gen);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  return { startStatus, startPolling, stopPolling, streamLoop };
}
