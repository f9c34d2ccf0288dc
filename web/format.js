// jointops dashboard: the contract's names, exact JSON and exact formatting
// (kg and £ from integers, never floating point).

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

export function pad2(n) {
  return String(n).padStart(2, '0');
}
export function clock(d) {
  return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
}
