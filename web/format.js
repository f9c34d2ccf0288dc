// jointops dashboard: what needs no DOM: the contract's names, exact JSON and
// exact formatting (kg and £ from integers, never floating point), times with
// their zone, the status in words, and the wire (fragment, SSE, file names).

// ---------------------------------------------------------------- names

// Contract §5, with the words the page uses for them.
export const MEASURES = [
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
export const LABEL = Object.fromEntries(MEASURES);

export const POLL_MS = 2000;
export const BACKOFF_MIN_MS = 1000;
export const BACKOFF_MAX_MS = 10000;
export const STREAM_IDLE_MS = 60000; // no byte at all for this long: reconnect
export const TIMELINE_GAP_MS = 2000; // at most one timeline fetch (and access-log entry) per 2 s

// ---------------------------------------------------------- exact JSON

// Parse JSON keeping every integer exact, as its decimal string. Totals can
// pass 2^53 (cash in pence, drugs in mg), where a JS number would round.
export const INT_KEY = '\u0000int';
export function parseExact(text) {
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
export function intStr(v) {
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return v.replace(/^(-?)0+(?=\d)/, '$1').replace(/^-0$/, '0');
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  if (typeof v === 'bigint') return v.toString();
  return '0';
}

// ---------------------------------------------------- formatting (exact)

export function splitSign(s) {
  return s.charAt(0) === '-' ? ['-', s.slice(1)] : ['', s];
}
export function groupDigits(s) {
  const [sign, d] = splitSign(intStr(s));
  return sign + d.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
// Milligrams → kilograms with up to 3 decimals, rounded half up, from the
// digits alone. A non-zero amount under 0.0005 kg reads "<0.001".
export function mgToKg(s) {
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
export function penceToPounds(s) {
  const [sign, d] = splitSign(intStr(s));
  const p = d.padStart(3, '0');
  return sign + '£' + groupDigits(p.slice(0, -2)) + '.' + p.slice(-2);
}
export function formatMeasure(name, v) {
  if (name === 'drugs_class_a_mg' || name === 'drugs_class_b_mg') return mgToKg(v);
  if (name === 'cash_pence') return penceToPounds(v);
  return groupDigits(v);
}
export function formatWithUnit(name, v) {
  const f = formatMeasure(name, v);
  return name === 'drugs_class_a_mg' || name === 'drugs_class_b_mg' ? f + ' kg' : f;
}
// For drawing only (bar lengths); never shown.
export function approx(v) {
  return Number(intStr(v));
}


// ------------------------------------------- published units (exact)

// Milligrams → kilograms with every decimal the integer has ("7.6", "0.000250"
// → "0.00025"): what a press release may quote, never rounded.
export function mgToKgExact(s) {
  const [sign, d] = splitSign(intStr(s));
  const p = d.padStart(7, '0');
  const frac = p.slice(-6).replace(/0+$/, '');
  return sign + groupDigits(p.slice(0, -6)) + (frac ? '.' + frac : '');
}
// Pence → "£214,568" when whole pounds, else "£214,568.50".
export function penceToPublished(s) {
  const [sign, d] = splitSign(intStr(s));
  const p = d.padStart(3, '0');
  const pence = p.slice(-2);
  return sign + '£' + groupDigits(p.slice(0, -2)) + (pence === '00' ? '' : '.' + pence);
}
// "1 arrest", "290 arrests" (the count formatted with separators).
export function count(v, one, many) {
  const s = intStr(v);
  return groupDigits(s) + ' ' + (s === '1' ? one : many);
}

// The headline sentences, worded as the Met's release words them.
export function pressLines(t) {
  const v = (k) => intStr((t || {})[k]);
  return [
    ['arrests', count(v('arrests'), 'arrest', 'arrests')],
    ['charges', count(v('people_charged'), 'person', 'people') + ' charged with ' + count(v('charges'), 'offence', 'offences')],
    ['charges_drug_trafficking', count(v('charges_drug_trafficking'), 'charge', 'charges') + ' of drug supply (' +
      groupDigits(v('charges_class_a')) + ' Class A, ' + groupDigits(v('charges_class_b')) + ' Class B), ' +
      groupDigits(v('charges_modern_slavery')) + ' of modern slavery, ' + groupDigits(v('charges_weapons')) +
      ' of weapons offences and ' + groupDigits(v('charges_other')) + ' of other offences'],
    ['lines_closed', count(v('lines_closed'), 'county line', 'county lines') + ' closed'],
    ['people_safeguarded', count(v('people_safeguarded'), 'vulnerable person', 'vulnerable people') + ' safeguarded'],
    ['referrals', count(v('referrals_support'), 'person', 'people') + ' referred to specialist support providers and ' +
      groupDigits(v('referrals_nrm')) + ' to the National Referral Mechanism'],
    ['people_engaged', count(v('people_engaged'), 'person', 'people') + ' reached at drug lines training and awareness events'],
    ['weapons', count(v('firearms'), 'firearm', 'firearms') + ' and ' + count(v('weapons'), 'other weapon', 'other weapons') + ' seized'],
    ['drugs', mgToKgExact(v('drugs_class_a_mg')) + ' kg of Class A drugs and ' + mgToKgExact(v('drugs_class_b_mg')) + ' kg of Class B drugs seized'],
    ['cash_pence', penceToPublished(v('cash_pence')) + ' in cash seized'],
  ];
}

// What a set of seizures consists of: "1 firearm, 0.25 kg of Class A drugs".
export function seizureParts(t) {
  const v = (k) => intStr((t || {})[k]);
  const parts = [];
  if (v('firearms') !== '0') parts.push(count(v('firearms'), 'firearm', 'firearms'));
  if (v('weapons') !== '0') parts.push(count(v('weapons'), 'other weapon', 'other weapons'));
  if (v('drugs_class_a_mg') !== '0') parts.push(mgToKgExact(v('drugs_class_a_mg')) + ' kg of Class A drugs');
  if (v('drugs_class_b_mg') !== '0') parts.push(mgToKgExact(v('drugs_class_b_mg')) + ' kg of Class B drugs');
  if (v('cash_pence') !== '0') parts.push(penceToPublished(v('cash_pence')) + ' in cash');
  return parts;
}

// The provisional seizures in a totals document, in one plain statement:
// how many, of what, and which force reported them.
export function provisionalStatement(doc) {
  const prov = (doc && doc.provisional) || null;
  const n = intStr(prov ? (prov.joint || {}).provisional_seizures : ((doc || {}).totals || {}).provisional_seizures);
  if (n === '0') return 'No seizure in these figures is provisional.';
  let text = (n === '1' ? '1 seizure in these figures is' : groupDigits(n) + ' seizures in these figures are') +
    ' provisional (not yet confirmed, for example drugs awaiting weighing)';
  if (!prov) return text + '.';
  const what = seizureParts(prov.joint);
  if (what.length) text += ': ' + what.join(', ');
  const by = Object.keys(prov.forces || {}).sort()
    .filter((f) => intStr(prov.forces[f].provisional_seizures) !== '0')
    .map((f) => f + ' (' + [count(prov.forces[f].provisional_seizures, 'seizure', 'seizures'), ...seizureParts(prov.forces[f])].join(', ') + ')');
  if (by.length) text += '. Reported by ' + by.join('; ');
  return text + '. Quote them as provisional.';
}

// -------------------------------------------------- times and zones

// Times are shown in the operation's zone, always with date and zone name.
export const DISPLAY_ZONE = 'Europe/London';
const partsCache = new Map();
function zoneParts(ms, zone) {
  let f = partsCache.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', {
      timeZone: zone, weekday: 'short', day: 'numeric', month: 'short', year: 'numeric',
      hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short',
    });
    partsCache.set(zone, f);
  }
  return Object.fromEntries(f.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
}
// "2023-10-16T08:00:00.000Z" → "Mon 16 Oct 2023, 09:00:00 BST".
export function when(iso, zone) {
  const ms = typeof iso === 'number' ? iso : Date.parse(iso);
  if (!Number.isFinite(ms)) return String(iso || '–');
  const p = zoneParts(ms, zone || DISPLAY_ZONE);
  return p.weekday + ' ' + p.day + ' ' + p.month + ' ' + p.year + ', ' + p.hour + ':' + p.minute + ':' + p.second + ' ' + p.timeZoneName;
}
// The zone's offset from UTC at `ms`, in ms (from the wall clock it shows).
function offsetAt(ms, zone) {
  const numeric = new Intl.DateTimeFormat('en-GB', {
    timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(ms));
  const p = Object.fromEntries(numeric.map((x) => [x.type, +x.value]));
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
}
// A datetime-local value read as wall-clock time in `zone` → RFC 3339 UTC.
// Twice, because the offset at the guess may differ (a change of clocks).
export function localToRfc3339(value, zone) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value || '');
  if (!m) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  let t = wall - offsetAt(wall, zone);
  t = wall - offsetAt(t, zone);
  return new Date(t).toISOString();
}
// An instant → the datetime-local value showing it in `zone`.
export function toLocalInput(ms, zone) {
  const wall = Math.floor(ms / 1000) * 1000 + offsetAt(ms, zone);
  return new Date(wall).toISOString().slice(0, 19);
}
// "2023-10-16T08:00:00.000Z" → "20231016T080000Z", for file names.
export function compactStamp(iso) {
  return new Date(iso).toISOString().replace(/\.\d+/, '').replace(/[-:]/g, '');
}

// ------------------------------------------------ status, in words

// [state for the colour, words] for the hub's rollup (§ /status).
export function rollupWords(r) {
  const commit = r.last_commit_at ? '; last commit ' + when(r.last_commit_at) : '; nothing committed yet';
  switch (r.state) {
    case 'live':
      return ['live', 'running, caught up' + commit];
    case 'behind':
      return ['behind', 'running, behind by ' + groupDigits(intStr(r.lag)) + ' records not yet counted' + commit];
    case 'stopped':
      return ['stopped', 'STOPPED: no sign of life' + (r.heartbeat_at ? ' since ' + when(r.heartbeat_at) : '') +
        '. Figures are not being updated' + commit];
    case 'never':
      return ['stopped', 'has never run on this hub: nothing is counted'];
    default:
      return ['unknown', String(r.state || 'unknown')];
  }
}
// [state, words] for the age of the operation's data: its last counted event.
export function dataAgeWords(st) {
  if (!('last_event_at' in st)) return ['unknown', 'age not reported by this hub'];
  if (!st.last_event_at) return ['old', 'no event of this operation counted yet'];
  const hours = (Date.parse(st.now || new Date().toISOString()) - Date.parse(st.last_event_at)) / 3600000;
  const old = hours >= (Number(st.silent_after_hours) || 6);
  return [old ? 'old' : 'fresh', 'last event of this operation counted ' + when(st.last_event_at)];
}
export function liaisonWords(force, hidden) {
  const n = hidden === undefined || hidden === null ? null : intStr(hidden);
  return 'You are signed in as ' + force + '’s liaison. ' +
    (n === null ? 'Other forces’ rows are hidden from you. '
      : 'The rows of ' + n + ' other ' + (n === '1' ? 'force are' : 'forces are') + ' hidden from you. ') +
    'The joint totals include every force.';
}

// ------------------------------------------------------- the wire

// "#token=…&operation=…" → {token, operation}.
export function parseFragment(hash) {
  const out = {};
  for (const part of String(hash).replace(/^#/, '').split('&')) {
    if (!part) continue;
    const i = part.indexOf('=');
    const raw = i < 0 ? '' : part.slice(i + 1);
    let v = raw;
    try {
      v = decodeURIComponent(raw);
    } catch (e) {
      /* keep it raw */
    }
    out[i < 0 ? part : part.slice(0, i)] = v;
  }
  return out;
}
export function query(params) {
  const q = Object.entries(params).filter(([, v]) => v).map(([k, v]) => k + '=' + encodeURIComponent(v)).join('&');
  return q ? '?' + q : '';
}
// The file name in a Content-Disposition header, made safe; '' if none.
export function dispositionName(cd) {
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(cd || '');
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(cd || '');
  let name = '';
  try {
    name = star ? decodeURIComponent(star[1]) : plain ? plain[1] : '';
  } catch (e) {
    name = plain ? plain[1] : '';
  }
  return name.replace(/[\\/\u0000-\u001f]/g, '_').trim();
}

// Server-sent events, fed chunk by chunk: calls onEvent(name, data) for
// each complete event. Lines end in \r\n, \n or \r (a trailing \r waits).
export function sseParser(onEvent) {
  let buf = '';
  let event = '';
  let data = [];
  return (chunk) => {
    buf += chunk;
    let m;
    while ((m = /\r\n|\n|\r(?=[^\n])/.exec(buf))) {
      const line = buf.slice(0, m.index);
      buf = buf.slice(m.index + m[0].length);
      if (line === '') {
        if (data.length) onEvent(event || 'message', data.join('\n'));
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
  };
}

// HTTP to the API: every request with the caller's headers (`base()`), its
// JSON read exactly; an error answer throws HttpError with the API's words.
export class HttpError extends Error {
  constructor(status, message) {
    super(message || 'HTTP ' + status);
    this.status = status;
  }
}
export function makeClient(base, onAnswer) {
  const headers = (extra) => Object.assign(base(), extra || {});
  async function request(path, init) {
    const res = await fetch(path, Object.assign({ cache: 'no-store' }, init));
    onAnswer();
    if (!res.ok) {
      let msg = '';
      try {
        msg = JSON.parse(await res.text()).error || '';
      } catch (e) {
        /* not JSON */
      }
      throw new HttpError(res.status, msg);
    }
    return res;
  }
  async function getJson(path, signal) {
    const res = await request(path, { headers: headers({ Accept: 'application/json' }), signal });
    return parseExact(await res.text());
  }
  async function postJson(path, body) {
    const res = await request(path, {
      method: 'POST',
      headers: headers({ Accept: 'application/json', 'Content-Type': 'application/json' }),
      body: JSON.stringify(body),
    });
    return parseExact(await res.text());
  }
  return { headers, request, getJson, postJson };
}
export function opPath(id, what) {
  return '/api/v1/operations/' + encodeURIComponent(id) + '/' + what;
}
