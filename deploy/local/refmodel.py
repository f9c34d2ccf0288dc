#!/usr/bin/env python3
"""Reference model of the demo: force agents and hub rules R1-R6, from the export files alone.

Independent of the Rust code and of the generator in make_exports.py: it reads the
exports back, runs each agent (validate, normalise, ledger of revisions) in the
demo's order, feeds the events to a model hub (contract section 4), and computes the
totals of contract section 5. Integers only on the counting path.

Run alone: python3 deploy/local/refmodel.py OUTDIR  (prints the expected JSON).
"""
import csv
import json
import random
import re
import sys
from collections import Counter, defaultdict, namedtuple
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

OPERATION = "CLIW-2023-10"
BST = timezone(timedelta(hours=1))
FORCES = ["MPS", "KENT", "ESSEX", "SUSSEX", "HERTS", "TVP"]
EXT = {"MPS": "jsonl", "KENT": "csv", "ESSEX": "jsonl", "SUSSEX": "csv",
       "HERTS": "jsonl", "TVP": "csv", "BTP": "csv"}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ms(dt):
    return (dt - EPOCH) // timedelta(milliseconds=1)


# What the hub knows (R6): CLIW-2023-11 is deliberately missing.
HUB_OPERATIONS = {
    OPERATION: (_ms(datetime(2023, 10, 9, tzinfo=BST)), _ms(datetime(2023, 10, 16, tzinfo=BST)),
                frozenset(FORCES)),
}
# What the agents know (they hold a pseudonymisation secret for each).
AGENT_OPERATIONS = {"CLIW-2023-10", "CLIW-2023-11"}

# The demo's runs, in order: (force, file relative to OUTDIR).
DEMO_RUNS = ([(f, f"phase1/{f}.{EXT[f]}") for f in FORCES + ["BTP"]]
             + [(f, f"phase2/{f}.{EXT[f]}") for f in FORCES]
             + [("MPS", "phase2/MPS.jsonl")])

TOTAL_NAMES = [
    "arrests", "people_charged", "charges", "charges_drug_trafficking", "charges_class_a",
    "charges_class_b", "charges_modern_slavery", "charges_weapons", "charges_other",
    "lines_closed", "people_safeguarded", "referrals_support", "referrals_nrm",
    "people_engaged", "firearms", "weapons", "drugs_class_a_mg", "drugs_class_b_mg",
    "cash_pence", "joint_outcomes", "provisional_seizures",
]
KINDS = ("arrest", "charge", "seizure", "line_closure", "safeguarding", "engagement")
ARREST_OFFENCES = {"DRUG_SUPPLY", "MODERN_SLAVERY", "WEAPONS", "VIOLENCE", "OTHER"}
CHARGE_TOTAL = {"DRUG_SUPPLY_CLASS_A": "charges_class_a", "DRUG_SUPPLY_CLASS_B": "charges_class_b",
                "MODERN_SLAVERY": "charges_modern_slavery", "WEAPONS": "charges_weapons",
                "OTHER": "charges_other"}
# Seizure item -> (total name, {unit: factor to the wire unit}).
ITEMS = {
    "FIREARM": ("firearms", {"count": 1}),
    "WEAPON": ("weapons", {"count": 1}),
    "DRUG_CLASS_A": ("drugs_class_a_mg", {"mg": 1, "g": 1000, "kg": 1_000_000}),
    "DRUG_CLASS_B": ("drugs_class_b_mg", {"mg": 1, "g": 1000, "kg": 1_000_000}),
    "CASH": ("cash_pence", {"pence": 1, "GBP": 100}),
}
CLOSURES = {"HOLDER_CHARGED", "NUMBER_DEACTIVATED", "OTHER"}
REFERRALS = {"NONE", "SUPPORT_PROVIDER", "NRM"}

EVENT_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
OPERATION_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
INT_RE = re.compile(r"[0-9]+")
DECIMAL_RE = re.compile(r"[0-9]+(\.[0-9]+)?")

# What a report says, minus revision and reported_at. `joint` is the normalised raw
# joint_ref (equal normalised refs give equal pseudonyms, so grouping on it is R4's).
Content = namedtuple("Content", "operation kind joint occurred_ms withdrawn outcome")
Event = namedtuple("Event", "force event_id revision reported_at content")


class Reject(Exception):
    """A row the agent refuses, with a short reason."""


# ---------------------------------------------------------------- reading exports

def _text(value):
    """A JSON value as the text a CSV cell would hold; None means absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, str):
        return value
    raise Reject(f"unsupported JSON value {value!r}")


def read_rows(path):
    """Yield (line number, {field: text}) with absent fields left out."""
    path = Path(path)
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if v not in ("", None)}
    else:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                obj = json.loads(line, parse_float=Decimal)
                row = {}
                for k, v in obj.items():
                    try:
                        t = _text(v)
                    except Reject:
                        t = repr(v)
                    if t is not None:
                        row[k] = t
                yield number, row


# ---------------------------------------------------------------- the agent

def normalise(kind, raw):
    if kind == "line_closure":
        digits = "".join(c for c in raw if c in "0123456789")
        return "0" + digits[2:] if digits.startswith("44") else digits
    return "".join(raw.split()).upper()


def _bool(row, name):
    v = row.get(name)
    if v is None:
        return False
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise Reject(f"{name} is not true/false: {v!r}")


def _time_ms(text):
    if not RFC3339_RE.fullmatch(text):
        raise Reject(f"occurred_at is not RFC 3339: {text!r}")
    dt = datetime.fromisoformat(text)
    if not 2000 <= dt.year < 2100:
        raise Reject(f"occurred_at out of range: {text!r}")
    return _ms(dt)


def _outcome(kind, row):
    def need(name):
        if name not in row:
            raise Reject(f"{kind} row without {name}")
        return row[name]

    if kind == "arrest":
        group = need("offence_group")
        if group not in ARREST_OFFENCES:
            raise Reject(f"unknown offence_group {group!r}")
        return ("arrest", group)
    if kind == "charge":
        pairs = []
        for part in need("charges").split(";"):
            offence, _, count = part.partition(":")
            if offence not in CHARGE_TOTAL:
                raise Reject(f"unknown charge offence {offence!r}")
            if not INT_RE.fullmatch(count) or not 1 <= int(count) <= 1000:
                raise Reject(f"charge count not in 1..=1000: {part!r}")
            if offence in (o for o, _ in pairs):
                raise Reject(f"charge offence repeated: {offence}")
            pairs.append((offence, int(count)))
        return ("charge", tuple(sorted(pairs)))
    if kind == "seizure":
        item, quantity, unit = need("item"), need("quantity"), need("unit")
        if item not in ITEMS:
            raise Reject(f"unknown seizure item {item!r}")
        factors = ITEMS[item][1]
        if unit not in factors:
            raise Reject(f"unit {unit!r} not allowed for {item}")
        if not DECIMAL_RE.fullmatch(quantity):
            raise Reject(f"quantity is not a decimal: {quantity!r}")
        try:
            exact = Decimal(quantity) * factors[unit]
        except InvalidOperation:
            raise Reject(f"quantity is not a decimal: {quantity!r}")
        if exact != exact.to_integral_value():
            raise Reject(f"quantity {quantity} {unit} is not a whole number of wire units")
        amount = int(exact)
        if not 1 <= amount <= 10**12:
            raise Reject(f"quantity out of range: {quantity} {unit}")
        return ("seizure", item, amount, _bool(row, "provisional"))
    if kind == "line_closure":
        closure = row.get("closure", "OTHER")
        if closure not in CLOSURES:
            raise Reject(f"unknown closure {closure!r}")
        return ("line_closure", closure)
    if kind == "safeguarding":
        referral = row.get("referral", "NONE")
        if referral not in REFERRALS:
            raise Reject(f"unknown referral {referral!r}")
        return ("safeguarding", referral)
    people = need("people")
    if not INT_RE.fullmatch(people) or not 1 <= int(people) <= 1_000_000:
        raise Reject(f"people not in 1..=1000000: {people!r}")
    return ("engagement", int(people))


def parse_row(row):
    """(record_id, Content) for a valid row, else Reject."""
    for name in ("record_id", "kind", "operation", "occurred_at"):
        if not row.get(name, "").strip():
            raise Reject(f"missing {name}")
    record_id, kind, operation = row["record_id"], row["kind"], row["operation"]
    if not EVENT_ID_RE.fullmatch(record_id) or len(record_id) > 120:
        raise Reject(f"bad record_id {record_id!r}")
    if kind not in KINDS:
        raise Reject(f"unknown kind {kind!r}")
    if not OPERATION_RE.fullmatch(operation) or operation not in AGENT_OPERATIONS:
        raise Reject(f"operation unknown to the agent: {operation!r}")
    occurred = _time_ms(row["occurred_at"])
    joint = None
    if "joint_ref" in row:
        joint = normalise(kind, row["joint_ref"])
        if not joint:
            raise Reject("joint_ref normalises to nothing")
    return record_id, Content(operation, kind, joint, occurred, _bool(row, "withdrawn"),
                              _outcome(kind, row))


def identity(content):
    return (content.operation, content.kind, content.joint)


def run_agent(force, path, label, ledger, reported_at):
    """One agent run over one export. Mutates the force's ledger; returns events, stats, rejects."""
    events, rejects, seen = [], [], {}
    stats = {"force": force, "file": label, "published": 0, "unchanged": 0, "withdrawn": 0,
             "rejected": 0}

    def publish(event_id, revision, content):
        events.append(Event(force, event_id, revision, reported_at, content))
        stats["published"] += 1
        stats["withdrawn"] += content.withdrawn

    for line, row in read_rows(path):
        rid = row.get("record_id")
        if rid in seen:
            if seen[rid] == row:
                stats["unchanged"] += 1
            else:
                stats["rejected"] += 1
                rejects.append({"file": label, "line": line,
                                "reason": f"record_id {rid} repeated with different values"})
            continue
        try:
            rid, content = parse_row(row)
        except Reject as e:
            stats["rejected"] += 1
            rejects.append({"file": label, "line": line, "reason": str(e)})
            continue
        seen[rid] = row
        entry = ledger.get(rid)
        if entry is None:
            assert not content.withdrawn, f"{label}:{line} withdraws a record never published"
            publish(rid, 1, content)
            ledger[rid] = {"event_id": rid, "revision": 1, "content": content, "raw": row, "n": 1}
        elif entry["content"] == content:
            # The generator must never change a row's text without changing its meaning,
            # so that "changed" is the same whether the agent compares text or meaning.
            assert entry["raw"] == row, f"{label}:{line} text changed, meaning did not"
            stats["unchanged"] += 1
        elif identity(entry["content"]) != identity(content):
            assert not content.withdrawn, f"{label}:{line} identity change on a withdrawal"
            if not entry["content"].withdrawn:
                publish(entry["event_id"], entry["revision"] + 1,
                        entry["content"]._replace(withdrawn=True))
            n = entry["n"] + 1
            publish(f"{rid}:{n}", 1, content)
            ledger[rid] = {"event_id": f"{rid}:{n}", "revision": 1, "content": content,
                           "raw": row, "n": n}
        else:
            assert entry["raw"] != row
            entry.update(revision=entry["revision"] + 1, content=content, raw=row)
            publish(entry["event_id"], entry["revision"], content)
    return events, stats, rejects


# ---------------------------------------------------------------- the hub

def measures(content):
    """What one report counts (contract section 2), as a Counter of total names."""
    m = Counter()
    o = content.outcome
    if o[0] == "arrest":
        m["arrests"] = 1
    elif o[0] == "charge":
        m["people_charged"] = 1
        for offence, count in o[1]:
            m["charges"] += count
            m[CHARGE_TOTAL[offence]] += count
        m["charges_drug_trafficking"] = m["charges_class_a"] + m["charges_class_b"]
    elif o[0] == "seizure":
        m[ITEMS[o[1]][0]] = o[2]
        m["provisional_seizures"] = int(o[3])
    elif o[0] == "line_closure":
        m["lines_closed"] = 1
    elif o[0] == "safeguarding":
        m["people_safeguarded"] = 1
        m["referrals_support"] = int(o[1] == "SUPPORT_PROVIDER")
        m["referrals_nrm"] = int(o[1] == "NRM")
    else:
        m["people_engaged"] = o[1]
    return m


class Hub:
    def __init__(self, operations=HUB_OPERATIONS):
        self.operations = operations
        self.seen = {}        # (force, event_id, revision) -> (reported_at, content)
        self.current = {}     # (force, event_id) -> Event with the highest revision
        self.dead = Counter()

    def receive(self, ev):
        op = self.operations.get(ev.content.operation)
        if op is None:
            self.dead["unknown-operation"] += 1
            return
        starts, ends, forces = op
        if forces is not None and ev.force not in forces:
            self.dead["force-not-in-operation"] += 1
            return
        if not starts <= ev.content.occurred_ms < ends:
            self.dead["outside-window"] += 1
            return
        key = (ev.force, ev.event_id, ev.revision)
        if key in self.seen:                                   # R1 / R2
            if self.seen[key] != (ev.reported_at, ev.content):
                self.dead["conflicting-revision"] += 1
            return
        report = (ev.force, ev.event_id)
        cur = self.current.get(report)
        if cur is not None and identity(cur.content) != identity(ev.content):
            self.dead["identity-changed"] += 1
            return
        self.seen[key] = (ev.reported_at, ev.content)
        if cur is None or ev.revision > cur.revision:
            self.current[report] = ev

    def totals(self, operation=OPERATION):
        groups = defaultdict(list)
        for (force, event_id), ev in self.current.items():
            c = ev.content
            if c.operation != operation or c.withdrawn:        # R3
                continue
            key = ("joint", c.kind, c.joint) if c.joint is not None else ("solo", force, event_id)
            groups[key].append(ev)
        forces = self.operations[operation][2] or {e.force for g in groups.values() for e in g}
        total = Counter()
        per_force = {f: Counter() for f in sorted(forces)}
        extra = Counter()     # what per-force rows add beyond the joint totals (R5)
        for reports in groups.values():                        # R4
            lead = min(reports, key=lambda e: (-e.reported_at, e.force, e.event_id))
            m = measures(lead.content)
            taking_part = {e.force for e in reports}
            if len(taking_part) > 1:
                m["joint_outcomes"] = 1
            total.update(m)
            for f in taking_part:
                per_force[f].update(m)
            for name, v in m.items():
                extra[name] += v * (len(taking_part) - 1)
        as_dict = lambda c: {n: c[n] for n in TOTAL_NAMES}  # noqa: E731
        return as_dict(total), {f: as_dict(c) for f, c in per_force.items()}, extra


# ---------------------------------------------------------------- the demo

def simulate(outdir, runs=DEMO_RUNS):
    outdir = Path(outdir)
    ledgers = defaultdict(dict)
    hub = Hub()
    events, agent_runs, rejected = [], [], []
    for reported_at, (force, label) in enumerate(runs, 1):
        evs, stats, rej = run_agent(force, outdir / label, label, ledgers[force], reported_at)
        for ev in evs:
            hub.receive(ev)
        events += evs
        agent_runs.append(stats)
        rejected += rej
    totals, per_force, extra = hub.totals()
    return {"totals": totals, "forces": per_force, "extra": extra, "dead_letters": dict(hub.dead),
            "rejected_rows": rejected, "agent_runs": agent_runs, "events": events}


def check_order_independence(outdir, result):
    """Runs within a phase may go in any order; deliveries may repeat and reorder."""
    phase1 = [r for r in DEMO_RUNS if r[1].startswith("phase1/")]
    phase2 = [r for r in DEMO_RUNS if r[1].startswith("phase2/")][:-1]
    for p1, p2 in ((phase1[::-1], phase2[::-1]), (phase1[3:] + phase1[:3], phase2[2:] + phase2[:2])):
        other = simulate(outdir, p1 + p2 + [DEMO_RUNS[-1]])
        assert other["totals"] == result["totals"], "totals depend on the order of runs in a phase"
        assert other["forces"] == result["forces"], "per-force view depends on run order"
    rng = random.Random(7)
    deliveries = result["events"] + rng.sample(result["events"], len(result["events"]) // 3)
    rng.shuffle(deliveries)
    hub = Hub()
    for ev in deliveries:
        hub.receive(ev)
    totals, per_force, _ = hub.totals()
    assert (totals, per_force) == (result["totals"], result["forces"]), "hub depends on arrival order"


def expected(outdir):
    result = simulate(outdir)
    check_order_independence(outdir, result)
    return result


if __name__ == "__main__":
    r = expected(sys.argv[1])
    print(json.dumps({k: r[k] for k in ("totals", "forces", "dead_letters", "rejected_rows",
                                        "agent_runs")}, indent=1))
