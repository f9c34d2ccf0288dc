#!/usr/bin/env python3
"""Deterministic force exports for the CLIW-2023-10 demo, and the totals they must give.

Usage: python3 deploy/local/make_exports.py OUTDIR

Writes OUTDIR/phase1/<FORCE>.<ext> (mid-week snapshots, plus BTP, which is not taking
part), OUTDIR/phase2/<FORCE>.<ext> (full end-of-week snapshots) and OUTDIR/expected.json.

How the data is built: the real-world outcomes are decided first, with final measures
that add up exactly to the scenario's table (shared/scenarios/cliw-2023-10.md). Each
outcome is then handed to the force or forces that report it, each writing joint
references in its own style; then the noise is added: phase-1 figures that phase 2
revises, withdrawals, an identity change, a duplicated row, invalid rows and events
the hub must dead-letter. expected.json is not taken from that plan: refmodel.py
reads the written files back and simulates the agents and the hub, and this script
fails loudly unless the result is the scenario's table.
"""
import csv
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refmodel  # noqa: E402

BST = timezone(timedelta(hours=1))
OP = refmodel.OPERATION
CUTOFF = datetime(2023, 10, 12, 8, 0, tzinfo=BST)   # when the phase-1 exports were taken
LAST = datetime(2023, 10, 15, 23, 0, tzinfo=BST)
PARTNERS = ["KENT", "ESSEX", "SUSSEX", "HERTS", "TVP"]
FORCES = ["MPS"] + PARTNERS
EXT = refmodel.EXT
FIELDS = ["record_id", "kind", "operation", "occurred_at", "joint_ref", "withdrawn",
          "offence_group", "charges", "item", "quantity", "unit", "provisional", "closure",
          "referral", "people"]
PREFIX = {"arrest": "AR", "charge": "CH", "seizure": "SZ", "line_closure": "CL",
          "safeguarding": "SG", "engagement": "EN"}
A, B, MS, W, O = ("DRUG_SUPPLY_CLASS_A", "DRUG_SUPPLY_CLASS_B", "MODERN_SLAVERY", "WEAPONS",
                  "OTHER")

# The scenario's table, plus our split of the 90 charges that are not drug trafficking.
TARGETS = {
    "arrests": 290, "people_charged": 163, "charges": 377, "charges_drug_trafficking": 287,
    "charges_class_a": 238, "charges_class_b": 49, "charges_modern_slavery": 14,
    "charges_weapons": 41, "charges_other": 35, "lines_closed": 92, "people_safeguarded": 110,
    "referrals_support": 31, "referrals_nrm": 3, "people_engaged": 9878, "firearms": 17,
    "weapons": 56, "drugs_class_a_mg": 7_600_000, "drugs_class_b_mg": 9_300_000,
    "cash_pence": 21_456_800,
}
# The table exactly as the scenario publishes it, kept apart from the construction above.
SCENARIO = {"arrests": 290, "people_charged": 163, "charges": 377, "charges_drug_trafficking": 287,
            "charges_class_a": 238, "charges_class_b": 49, "lines_closed": 92,
            "people_safeguarded": 110, "referrals_support": 31, "referrals_nrm": 3,
            "people_engaged": 9878, "firearms": 17, "weapons": 56, "drugs_class_a_mg": 7600000,
            "drugs_class_b_mg": 9300000, "cash_pence": 21456800}
EXPECTED_DEAD = {"outside-window": 2, "unknown-operation": 1, "force-not-in-operation": 3}

# Solo outcomes per partner force; the Met's share is whatever remains of the target.
SOLO = {  # kind: {force: n}
    "arrest": {"KENT": 20, "ESSEX": 18, "SUSSEX": 14, "HERTS": 14, "TVP": 16},
    "charge": {"KENT": 9, "ESSEX": 8, "SUSSEX": 6, "HERTS": 6, "TVP": 7},
    "line_closure": {"KENT": 5, "ESSEX": 5, "SUSSEX": 4, "HERTS": 4, "TVP": 4},
    "safeguarding": {"KENT": 8, "ESSEX": 8, "SUSSEX": 7, "HERTS": 6, "TVP": 7},
    "engagement": {"KENT": 4, "ESSEX": 4, "SUSSEX": 3, "HERTS": 3, "TVP": 4},
    "FIREARM": {"KENT": 2, "ESSEX": 1, "SUSSEX": 1, "HERTS": 1, "TVP": 2},
    "WEAPON": {"KENT": 3, "ESSEX": 3, "SUSSEX": 2, "HERTS": 2, "TVP": 2},
    "DRUG_CLASS_A": {"KENT": 2, "ESSEX": 2, "SUSSEX": 2, "HERTS": 1, "TVP": 2},
    "DRUG_CLASS_B": {"KENT": 2, "ESSEX": 1, "HERTS": 2, "TVP": 1},
    "CASH": {"KENT": 3, "ESSEX": 2, "SUSSEX": 2, "HERTS": 3, "TVP": 3},
}


def pairs_of(*spec):
    """[(("MPS","KENT"), 6), ...] -> list of force tuples."""
    return [forces for forces, n in spec for _ in range(n)]


JOINT_ARRESTS = pairs_of((("MPS", "KENT"), 6), (("MPS", "ESSEX"), 5), (("MPS", "SUSSEX"), 3),
                         (("MPS", "HERTS"), 3), (("MPS", "TVP"), 3), (("KENT", "SUSSEX"), 2),
                         (("MPS", "KENT", "ESSEX"), 1))
JOINT_LINES = pairs_of((("MPS", "KENT"), 7), (("MPS", "ESSEX"), 6), (("MPS", "SUSSEX"), 4),
                       (("MPS", "HERTS"), 3), (("MPS", "TVP"), 4), (("MPS", "KENT", "ESSEX"), 1))


class Rec:
    """One record of one force: its row in each phase (None: not in that export)."""

    def __init__(self, force, kind, when, row, seq):
        self.force, self.kind, self.when, self.seq = force, kind, when, seq
        self.rows = {"phase1": row if when < CUTOFF else None, "phase2": row}
        self.duplicated = set()       # phases whose export holds this row twice
        self.invalid = {}             # phase -> why the agent must reject the row
        self.record_id = None

    def revise(self, **changes):
        """Phase 2 differs from phase 1 by these fields (None removes a field)."""
        assert self.rows["phase1"] is not None, "revising a record phase 1 does not hold"
        row = dict(self.rows["phase1"], **changes)
        self.rows["phase2"] = {k: v for k, v in row.items() if v is not None}

    def phase1_differs(self, **changes):
        """Phase 1 held an earlier (wrong) version of the final row."""
        row = dict(self.rows["phase2"], **changes)
        self.rows["phase1"] = {k: v for k, v in row.items() if v is not None}


class Gen:
    def __init__(self, seed=20231009):
        self.rng = random.Random(seed)
        self.recs = []
        self.lines = iter(self.rng.sample(range(900000, 901000), 1000))
        self.actions = iter(self.rng.sample(range(100, 1000), 900))
        self.exhibits = iter(self.rng.sample(range(1000, 9999), 900))
        self.joint = 0                # outcomes that end with 2+ forces counting

    # ---- values -------------------------------------------------------------
    def when(self, phase=None):
        """A time in the week; phase 'p1' before the phase-1 cutoff, 'p2' after it."""
        day = {"p1": (9, 11), "p2": (12, 15), None: (9, 15)}[phase]
        hour = self.rng.randint(9 if phase == "p2" else 6, 22)
        return datetime(2023, 10, self.rng.randint(*day), hour, 5 * self.rng.randrange(12),
                        tzinfo=BST)

    def json(self, force):
        return EXT[force] == "jsonl"

    def num(self, force, n):
        """JSON exports write integers sometimes as numbers, sometimes as strings."""
        return n if self.json(force) and self.rng.random() < 0.6 else str(n)

    def flag(self, force, value, may_omit=True):
        if not value and may_omit and self.rng.random() < 0.5:
            return None
        if self.json(force) and self.rng.random() < 0.7:
            return value
        return "true" if value else "false"

    @staticmethod
    def dec(n, places):
        whole, frac = divmod(n, 10 ** places)
        frac = f"{frac:0{places}d}".rstrip("0")
        return f"{whole}.{frac}" if frac else str(whole)

    def quantity(self, force, item, amount):
        """quantity/unit for an amount in wire units, in a style the force might use."""
        r = self.rng.random()
        if item in ("FIREARM", "WEAPON"):
            return {"quantity": self.num(force, amount), "unit": "count"}
        if item == "CASH":
            if r < 0.6:
                return {"quantity": f"{amount // 100}.{amount % 100:02d}", "unit": "GBP"}
            return {"quantity": self.num(force, amount), "unit": "pence"}
        if amount < 1000 and r < 0.5:
            return {"quantity": self.num(force, amount), "unit": "mg"}
        if amount >= 1_000_000 and r < 0.8:
            q = self.dec(amount, 6)
            return {"quantity": q if "." in q else self.num(force, int(q)), "unit": "kg"}
        q = self.dec(amount, 3)
        return {"quantity": q if "." in q else self.num(force, int(q)), "unit": "g"}

    def split(self, total, n, lo, hi, step=1):
        """n amounts (multiples of step, lo..hi before scaling) adding up exactly to total."""
        raw = [self.rng.randint(lo // step, hi // step) * step for _ in range(n)]
        scale = sum(raw)
        vals = [max(step, v * total // scale // step * step) for v in raw]
        vals[vals.index(max(vals))] += total - sum(vals)
        assert sum(vals) == total and min(vals) > 0, (total, vals)
        return vals

    # ---- joint references in each force's house style ------------------------
    @staticmethod
    def ref(force, kind, ref):
        if kind == "line_closure":       # ref is the 6-digit tail of 07700 9xxxxx
            return {"MPS": f"07700 {ref}", "KENT": f"+44 7700 {ref}", "ESSEX": f"447700{ref}",
                    "SUSSEX": f"07700{ref}", "HERTS": f"+447700 {ref}",
                    "TVP": f"07700-{ref[:3]}-{ref[3:]}", "BTP": f"07700 {ref}"}[force]
        return {"MPS": ref, "KENT": ref.lower(), "ESSEX": " - ".join(ref.split("-")).lower(),
                "SUSSEX": ref.capitalize(), "HERTS": ref.replace("-", " -", 1), "TVP": ref,
                "BTP": ref}[force]

    def new_ref(self, kind, owner=None):
        if kind == "line_closure":
            return str(next(self.lines))
        if kind in ("arrest", "charge"):
            return f"JA-2023-{next(self.actions):04d}"
        return {"seizure": "EXH", "safeguarding": "SG", "engagement": "EV"}[kind] + \
            f"-{owner or self.rng.choice(FORCES)}-{next(self.exhibits)}"

    # ---- outcomes -------------------------------------------------------------
    def outcome(self, kind, forces, fields, ref=None, when=None, phase=None,
                operation=OP, joint=True):
        """One real-world outcome, reported by each of `forces` with the same measures.

        fields(force) gives the kind's fields; joint outcomes get a raw joint_ref in
        each force's style and occurred_at a few minutes apart."""
        when = when or self.when(phase)
        if len(forces) > 1 and ref is None:
            ref = self.new_ref(kind, forces[-1])
        if joint and len(forces) > 1:
            self.joint += 1
        recs = []
        for i, force in enumerate(forces):
            at = when + timedelta(minutes=[0, 5, -10, 15][i % 4] if i else 0)
            row = {"operation": operation, "occurred_at": at.isoformat()}
            if ref is not None:
                row["joint_ref"] = self.ref(force, kind, ref)
            row.update({k: v for k, v in fields(force).items() if v is not None})
            rec = Rec(force, kind, when, row, len(self.recs))
            self.recs.append(rec)
            recs.append(rec)
        return recs

    def solo(self, kind, force, fields, phase=None, ref_share=0.0, **kw):
        ref = self.new_ref(kind, force) if self.rng.random() < ref_share else None
        return self.outcome(kind, [force], fields, ref=ref, phase=phase, **kw)[0]

    # field makers: each returns fields(force)
    def arrest(self, group=None):
        group = group or self.rng.choice(["DRUG_SUPPLY"] * 6 + ["WEAPONS"] * 2 + ["VIOLENCE"] * 1
                                         + ["MODERN_SLAVERY", "OTHER"])
        return lambda f: {"offence_group": group}

    @staticmethod
    def charge(pairs):
        return lambda f: {"charges": ";".join(f"{o}:{c}" for o, c in pairs)}

    def seizure(self, item, amount, provisional=False):
        return lambda f: {"item": item, **self.quantity(f, item, amount),
                          "provisional": self.flag(f, provisional)}

    def closure(self):
        c = self.rng.choice(["HOLDER_CHARGED"] * 4 + ["NUMBER_DEACTIVATED"] * 5 + ["OTHER"])
        return lambda f: {"closure": None if c == "OTHER" and not self.json(f)
                          and self.rng.random() < 0.5 else c}

    def safeguarding(self, referral):
        return lambda f: {"referral": None if referral == "NONE"
                          and self.rng.random() < 0.3 else referral}

    def engagement(self, people):
        return lambda f: {"people": self.num(f, people)}


# ------------------------------------------------------------------- the plan

def mps_share(kind, joint_count, target):
    n = target - joint_count - sum(SOLO[kind].values())
    assert n > 0, (kind, n)
    return n


def build_arrests(g):
    for forces in JOINT_ARRESTS:
        g.outcome("arrest", forces, g.arrest())
    # Joint arrest that TVP recorded too but withdraws in phase 2: counts once, via the Met.
    mps, tvp = g.outcome("arrest", ["MPS", "TVP"], g.arrest("DRUG_SUPPLY"), phase="p1",
                         joint=False)
    tvp.revise(withdrawn=g.flag("TVP", True))
    # Joint arrest also reported by BTP, which is not taking part: only the Met's counts.
    g.outcome("arrest", ["MPS", "BTP"], g.arrest("WEAPONS"), when=datetime(
        2023, 10, 10, 17, 40, tzinfo=BST), joint=False)
    for force, n in SOLO["arrest"].items():
        for _ in range(n):
            g.solo("arrest", force, g.arrest())
    for _ in range(mps_share("arrest", len(JOINT_ARRESTS) + 2, TARGETS["arrests"])):
        g.solo("arrest", "MPS", g.arrest())
    # Noise: arrests recorded in error, withdrawn in phase 2.
    for force in ["MPS", "MPS", "ESSEX"]:
        rec = g.solo("arrest", force, g.arrest(), phase="p1")
        rec.revise(withdrawn=g.flag(force, True))
    # Noise: an unknown offence group in phase 1, corrected in phase 2 (counts).
    kent = [r for r in g.recs if r.force == "KENT" and r.kind == "arrest"
            and r.rows["phase1"] is not None and "joint_ref" not in r.rows["phase2"]][0]
    kent.phase1_differs(offence_group="DRUGS")
    kent.invalid["phase1"] = "unknown offence_group"
    # Noise: the same arrest twice in Sussex's exports.
    next(r for r in g.recs if r.force == "SUSSEX" and r.kind == "arrest"
         and r.rows["phase1"] is not None and "joint_ref" not in r.rows["phase1"]).duplicated = {"phase1", "phase2"}
    # Dead letters: before the window; next month's operation; BTP's own arrest.
    g.solo("arrest", "MPS", g.arrest(), when=datetime(2023, 10, 8, 23, 40, tzinfo=BST))
    g.solo("arrest", "TVP", g.arrest(), when=datetime(2023, 10, 11, 15, 20, tzinfo=BST),
           operation="CLIW-2023-11")
    g.solo("arrest", "BTP", g.arrest("VIOLENCE"), when=datetime(2023, 10, 11, 8, 15, tzinfo=BST))
    # Invalid in phase 2 only: a date in a spreadsheet's format.
    rec = g.solo("arrest", "HERTS", g.arrest(), phase="p2")
    rec.rows["phase2"]["occurred_at"] = rec.when.strftime("%d/%m/%Y %H:%M")
    rec.invalid["phase2"] = "occurred_at not RFC 3339"


def build_charges(g):
    # 163 people charged; each row starts with its main offence, then the remaining
    # counts go to rows where they fit (several offences a row, none repeated).
    target = {A: 238, B: 49, MS: 14, W: 41, O: 35}
    rows = [{o: 1} for o in [A] * 110 + [B] * 25 + [MS] * 8 + [W] * 12 + [O] * 8]
    fits = {A: (A, B, MS), B: (B, A), MS: (MS, A), W: (A, W, B), O: (A, B, W, O, MS)}
    for offence in (A, B, MS, W, O):
        for _ in range(target[offence] - sum(r.get(offence, 0) for r in rows)):
            r = g.rng.choice([r for r in rows if next(iter(r)) in fits[offence]
                              and r.get(offence, 0) < 5 and (offence in r or len(r) < 3)])
            r[offence] = r.get(offence, 0) + 1
    assert len(rows) == TARGETS["people_charged"]
    g.rng.shuffle(rows)
    rows = [list(r.items()) for r in rows]
    joint_arrest_refs = {}
    for r in g.recs:
        if r.kind == "arrest" and r.force != "MPS" and "joint_ref" in r.rows["phase2"]:
            joint_arrest_refs.setdefault(r.force, r)
    # Joint charges follow joint arrests: same joint action number, different kind.
    for force in ("ESSEX", "KENT"):
        arrest = joint_arrest_refs[force]
        ref = refmodel.normalise("arrest", arrest.rows["phase2"]["joint_ref"])
        g.outcome("charge", ["MPS", force], g.charge(rows.pop()), ref=ref,
                  when=min(arrest.when + timedelta(hours=20), LAST))
    for force, n in SOLO["charge"].items():
        for _ in range(n):
            g.solo("charge", force, g.charge(rows.pop()))
    mps = [g.solo("charge", "MPS", g.charge(rows.pop())) for _ in range(len(rows))]
    # Amendments: a count lowered, an offence added after review.
    amended = next(r for r in mps if r.rows["phase1"] and f"{A}:2" in r.rows["phase2"]["charges"])
    amended.phase1_differs(charges=amended.rows["phase2"]["charges"].replace(f"{A}:2", f"{A}:3"))
    added = next(r for r in g.recs if r.kind == "charge" and r.force == "KENT"
                 and r.rows["phase1"] and ";" in r.rows["phase2"]["charges"])
    added.phase1_differs(charges=added.rows["phase2"]["charges"].rsplit(";", 1)[0])
    # Invalid in phase 1: a count of 0, corrected in phase 2.
    bad = next(r for r in g.recs if r.kind == "charge" and r.force == "TVP" and r.rows["phase1"]
               and O not in r.rows["phase2"]["charges"])
    bad.phase1_differs(charges=bad.rows["phase2"]["charges"] + f";{O}:0")
    bad.invalid["phase1"] = "charge count 0"


def build_seizures(g):
    def joint(item, forces, final, first=None, reviser=None, phase="p1", provisional=False):
        """Both forces report `first` (provisional) in phase 1; `reviser` weighs it in phase 2."""
        recs = g.outcome("seizure", forces, g.seizure(item, first or final, provisional or
                                                      first is not None), phase=phase)
        if reviser is not None:
            rec = recs[forces.index(reviser)]
            rec.revise(**g.quantity(reviser, item, final), provisional=g.flag(reviser, False, False))
        return final

    def solo_rev(item, force, final, first):
        rec = g.solo("seizure", force, g.seizure(item, first, True), phase="p1")
        quantity = g.quantity(force, item, final) if final != first else {}
        rec.revise(**quantity, provisional=g.flag(force, False, False))
        return final

    special = {
        "FIREARM": [joint("FIREARM", ["MPS", "HERTS"], 1)],
        "WEAPON": [joint("WEAPON", ["MPS", "TVP"], 3)],
        "DRUG_CLASS_A": [
            joint("DRUG_CLASS_A", ["MPS", "KENT"], 498_600, first=520_000, reviser="KENT"),
            joint("DRUG_CLASS_A", ["MPS", "ESSEX"], 112_450, first=120_000, reviser="MPS"),
            joint("DRUG_CLASS_A", ["MPS", "ESSEX"], 45_000, phase="p2", provisional=True),
            solo_rev("DRUG_CLASS_A", "MPS", 27_840, 30_000),
            solo_rev("DRUG_CLASS_A", "HERTS", 56_300, 60_000),
        ],
        "DRUG_CLASS_B": [
            joint("DRUG_CLASS_B", ["MPS", "SUSSEX"], 2_318_000, first=2_500_000, reviser="SUSSEX"),
            solo_rev("DRUG_CLASS_B", "MPS", 1_500_000, 1_500_000),    # confirmed as it was
            solo_rev("DRUG_CLASS_B", "TVP", 800_000, 800_000),
        ],
        "CASH": [joint("CASH", ["MPS", "ESSEX"], 1_234_000),
                 joint("CASH", ["MPS", "KENT", "SUSSEX"], 4_850_000, phase=None),
                 solo_rev("CASH", "MPS", 1_504_000, 1_500_000)],   # counted at the bank
    }
    # Still provisional at the end of the week (not yet weighed).
    g.solo("seizure", "MPS", g.seizure("DRUG_CLASS_A", 9_500, True), phase="p2")
    g.solo("seizure", "SUSSEX", g.seizure("DRUG_CLASS_B", 350_000, True), phase="p2")
    special["DRUG_CLASS_A"] += [9_500]
    special["DRUG_CLASS_B"] += [350_000]
    # Invalid in phase 1: 1.2345 g is not a whole number of mg; phase 2 has 12.345 g.
    essex = g.solo("seizure", "ESSEX", lambda f: {"item": "DRUG_CLASS_A", "quantity": "12.345",
                                                   "unit": "g"}, phase="p1")
    essex.phase1_differs(quantity="1.2345")
    essex.invalid["phase1"] = "1.2345 g is not whole mg"
    special["DRUG_CLASS_A"] += [12_345]

    ranges = {"FIREARM": (1, 1, 1), "WEAPON": (1, 4, 1), "DRUG_CLASS_A": (2_000, 600_000, 10),
              "DRUG_CLASS_B": (28_000, 1_200_000, 100), "CASH": (20_000, 2_500_000, 5)}
    mps_rows = {"FIREARM": 6, "WEAPON": 17, "DRUG_CLASS_A": 12, "DRUG_CLASS_B": 8, "CASH": 12}
    for item, (total_name, _) in refmodel.ITEMS.items():
        owners = [f for f, n in SOLO[item].items() for _ in range(n)] + ["MPS"] * mps_rows[item]
        remaining = TARGETS[total_name] - sum(special[item])
        if item == "FIREARM":       # a few seizures of two or three guns
            amounts = [1] * (len(owners) - 3) + [2, 2, 2]
        else:
            amounts = g.split(remaining, len(owners), *ranges[item])
        assert sum(amounts) == remaining and len(amounts) == len(owners), item
        for force, amount in zip(owners, amounts):
            g.solo("seizure", force, g.seizure(item, amount), ref_share=0.3)
    # Dead letter: BTP's own knife seizure.
    g.solo("seizure", "BTP", g.seizure("WEAPON", 1), when=datetime(2023, 10, 10, 21, 5, tzinfo=BST))


def build_lines(g):
    for forces in JOINT_LINES:
        g.outcome("line_closure", forces, g.closure())
    # Herts closed a line with the Met but only agreed the number afterwards:
    # no joint_ref in phase 1 (counted twice then), the number in phase 2 (joins the Met's).
    mps, herts = g.outcome("line_closure", ["MPS", "HERTS"], g.closure(), phase="p1")
    herts.phase1_differs(joint_ref=None)
    for force, n in SOLO["line_closure"].items():
        for _ in range(n):
            g.solo("line_closure", force, g.closure(), ref_share=0.8)
    for _ in range(mps_share("line_closure", len(JOINT_LINES) + 1, TARGETS["lines_closed"])):
        g.solo("line_closure", "MPS", g.closure(), ref_share=0.8)


def build_safeguarding(g):
    referrals = ["NRM"] * 3 + ["SUPPORT_PROVIDER"] * 31 + ["NONE"] * 76
    g.rng.shuffle(referrals)
    for forces in (["MPS", "KENT"], ["MPS", "ESSEX"], ["MPS", "TVP"]):
        g.outcome("safeguarding", forces, g.safeguarding(referrals.pop()))
    # Kent referred a young person to a support provider after the phase-1 export.
    referrals.remove("SUPPORT_PROVIDER")
    kent = g.solo("safeguarding", "KENT", g.safeguarding("SUPPORT_PROVIDER"), phase="p1")
    kent.phase1_differs(referral="NONE")
    for force, n in SOLO["safeguarding"].items():
        for _ in range(n - (force == "KENT")):
            g.solo("safeguarding", force, g.safeguarding(referrals.pop()))
    for _ in range(len(referrals)):
        g.solo("safeguarding", "MPS", g.safeguarding(referrals.pop()))
    # Invalid in phase 2 only: no occurred_at.
    rec = g.solo("safeguarding", "SUSSEX", g.safeguarding("NONE"), phase="p2")
    del rec.rows["phase2"]["occurred_at"]
    rec.invalid["phase2"] = "missing occurred_at"


def build_engagement(g):
    g.outcome("engagement", ["MPS", "SUSSEX"], g.engagement(240))   # joint schools event
    rev = g.solo("engagement", "MPS", g.engagement(135), phase="p1")
    rev.phase1_differs(people=g.num("MPS", 120))                      # late sign-in sheets
    owners = [f for f, n in SOLO["engagement"].items() for _ in range(n)] + ["MPS"] * 34
    for force, people in zip(owners, g.split(TARGETS["people_engaged"] - 240 - 135,
                                             len(owners), 15, 400)):
        g.solo("engagement", force, g.engagement(people))
    # Dead letter: a launch event before the week started.
    g.solo("engagement", "SUSSEX", g.engagement(60), when=datetime(2023, 10, 6, 18, 30, tzinfo=BST))


def plan():
    g = Gen()
    for build in (build_arrests, build_charges, build_seizures, build_lines,
                  build_safeguarding, build_engagement):
        build(g)
    for force in FORCES + ["BTP"]:
        for kind in PREFIX:
            mine = sorted((r for r in g.recs if r.force == force and r.kind == kind),
                          key=lambda r: (r.when, r.seq))
            for i, r in enumerate(mine, 1):
                r.record_id = f"{force}-{PREFIX[kind]}-{i:04d}"
    return g


# ------------------------------------------------------------------- writing

def write(outdir, g):
    """Write every export; return the rejects the plan intends, as (file, line)."""
    intended = set()
    for phase in ("phase1", "phase2"):
        (outdir / phase).mkdir(parents=True, exist_ok=True)
        for force in FORCES + (["BTP"] if phase == "phase1" else []):
            label = f"{phase}/{force}.{EXT[force]}"
            recs = sorted((r for r in g.recs if r.force == force and r.rows[phase] is not None),
                          key=lambda r: r.record_id)
            assert force != "BTP" or all(r.rows["phase1"] for r in g.recs if r.force == "BTP")
            rows = []
            for r in recs:
                row = {"record_id": r.record_id, "kind": r.kind, **r.rows[phase]}
                row = {k: row[k] for k in FIELDS if k in row}
                assert set(row) <= set(FIELDS), row
                if phase in r.invalid:
                    intended.add((label, len(rows) + (2 if EXT[force] == "csv" else 1)))
                rows += [row] * (2 if phase in r.duplicated else 1)
            with (outdir / label).open("w", newline="", encoding="utf-8") as f:
                if EXT[force] == "csv":
                    w = csv.DictWriter(f, FIELDS, lineterminator="\n")
                    w.writeheader()
                    for row in rows:
                        w.writerow({k: ("true" if v is True else "false" if v is False else v)
                                    for k, v in row.items()})
                else:
                    for row in rows:
                        assert not any(isinstance(v, float) for v in row.values())
                        f.write(json.dumps(row) + "\n")
    return intended


def check(result, g, intended):
    totals, forces = result["totals"], result["forces"]
    wrong = {k: (totals[k], v) for k, v in {**TARGETS, **SCENARIO}.items() if totals[k] != v}
    if wrong:
        raise SystemExit(f"FAIL: totals differ from the scenario (got, want): {wrong}")
    if totals["joint_outcomes"] != g.joint:
        raise SystemExit(f"FAIL: joint_outcomes {totals['joint_outcomes']}, planned {g.joint}")
    if totals["provisional_seizures"] != 3:
        raise SystemExit(f"FAIL: provisional_seizures {totals['provisional_seizures']}, planned 3")
    for name in refmodel.TOTAL_NAMES:
        summed = sum(f[name] for f in forces.values())
        extra = result["extra"][name]
        if summed != totals[name] + extra or (extra > 0) != (summed > totals[name]):
            raise SystemExit(f"FAIL: per-force {name} sums to {summed}, joint {totals[name]}")
    for name in ("arrests", "lines_closed", "cash_pence", "drugs_class_a_mg", "people_engaged"):
        if not sum(f[name] for f in forces.values()) > totals[name]:
            raise SystemExit(f"FAIL: per-force {name} should add up to more than the joint total")
    if result["dead_letters"] != EXPECTED_DEAD:
        raise SystemExit(f"FAIL: dead letters {result['dead_letters']}, want {EXPECTED_DEAD}")
    got = {(r["file"], r["line"]) for r in result["rejected_rows"]}
    if got != intended or not 4 <= len(got) <= 6:
        raise SystemExit(f"FAIL: rejected rows {sorted(got)}, planned {sorted(intended)}")
    last = result["agent_runs"][-1]
    if last["published"] or last["rejected"]:
        raise SystemExit(f"FAIL: the repeated phase-2 MPS run should publish nothing: {last}")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    outdir = Path(sys.argv[1])
    g = plan()
    intended = write(outdir, g)
    result = refmodel.expected(outdir)
    check(result, g, intended)
    out = {"operation": OP, "totals": result["totals"], "forces": result["forces"],
           "dead_letters": result["dead_letters"], "rejected_rows": result["rejected_rows"],
           "agent_runs": result["agent_runs"]}
    (outdir / "expected.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    for run in result["agent_runs"]:
        print("{file:20} published {published:4}  unchanged {unchanged:4}  withdrawn {withdrawn:2}"
              "  rejected {rejected}".format(**run))
    print(f"joint totals match the scenario; joint_outcomes {result['totals']['joint_outcomes']},"
          f" provisional_seizures {result['totals']['provisional_seizures']};"
          f" expected.json written to {outdir}")


if __name__ == "__main__":
    main()
