"""An independent Avro implementation (fastavro) on each side of jointops.

usage:
  fastavro_interop.py encode SCHEMA OUT   write the events below, single-object
                                          encoded, as lines "key<TAB>hex(value)"
  fastavro_interop.py decode SCHEMA IN    read lines of hex(value), check the
                                          header, print each event as JSON

Only schemas/ and the contract are used here: the header is C3 01 and the
CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form, both computed
by fastavro; keys are the contract's identity keys.
"""
import datetime
import io
import json
import sys

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

T = 1_696_900_000_000  # 2023-10-10T01:06:40Z

# What a third-party producer (force "NCA") reports. Expected joint totals are
# pinned in tests/interop.rs: arrests 1, charges 3 (class A 2, weapons 1),
# people_charged 1, drugs_class_a_mg 250000 (revision 2 wins), cash_pence 5000
# (joint with MPS, counted once), lines_closed 0 (withdrawn), people_engaged 40.
EVENTS = [
    {"event_id": "nca-1", "revision": 1, "force": "NCA", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 1000, "withdrawn": False, "joint_ref": None,
     "outcome": ("jointops.v1.Arrest", {"offence_group": "DRUG_SUPPLY"})},
    {"event_id": "nca-2", "revision": 1, "force": "NCA", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 1000, "withdrawn": False, "joint_ref": None,
     "outcome": ("jointops.v1.Charge", {"charges": [{"offence": "DRUG_SUPPLY_CLASS_A", "count": 2},
                                                    {"offence": "WEAPONS", "count": 1}]})},
    {"event_id": "nca-3", "revision": 1, "force": "NCA", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 1000, "withdrawn": False, "joint_ref": None,
     "outcome": ("jointops.v1.Seizure", {"item": "DRUG_CLASS_A", "quantity": 200000, "provisional": True})},
    {"event_id": "nca-3", "revision": 2, "force": "NCA", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 5000, "withdrawn": False, "joint_ref": None,
     "outcome": ("jointops.v1.Seizure", {"item": "DRUG_CLASS_A", "quantity": 250000, "provisional": False})},
    {"event_id": "nca-4", "revision": 1, "force": "NCA", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 1000, "withdrawn": False, "joint_ref": "3f0c9a2e",
     "outcome": ("jointops.v1.Seizure", {"item": "CASH", "quantity": 5000, "provisional": False})},
    {"event_id": "mps-9", "revision": 1, "force": "MPS", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 1000, "withdrawn": False, "joint_ref": "3f0c9a2e",
     "outcome": ("jointops.v1.Seizure", {"item": "CASH", "quantity": 5000, "provisional": False})},
    {"event_id": "nca-5", "revision": 1, "force": "NCA", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 1000, "withdrawn": False, "joint_ref": None,
     "outcome": ("jointops.v1.LineClosure", {"closure": "OTHER"})},
    {"event_id": "nca-5", "revision": 2, "force": "NCA", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 2000, "withdrawn": True, "joint_ref": None,
     "outcome": ("jointops.v1.LineClosure", {"closure": "OTHER"})},
    {"event_id": "nca-6", "revision": 1, "force": "NCA", "operation": "OP-X", "occurred_at": T,
     "reported_at": T + 1000, "withdrawn": False, "joint_ref": None,
     "outcome": ("jointops.v1.Engagement", {"people": 40})},
]
KINDS = {"Arrest": "arrest", "Charge": "charge", "Seizure": "seizure", "LineClosure": "line_closure",
         "Safeguarding": "safeguarding", "Engagement": "engagement"}


def load(path):
    schema = fastavro.parse_schema(json.load(open(path)))
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    return schema, header


def identity_key(e):
    kind = KINDS[e["outcome"][0].rsplit(".", 1)[1]]
    if e["joint_ref"] is not None:
        return f"{e['operation']}/{kind}/{e['joint_ref']}"
    return f"{e['operation']}/{e['force']}/{e['event_id']}"


def encode(schema_path, out_path):
    schema, header = load(schema_path)
    with open(out_path, "w") as out:
        for e in EVENTS:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, e)
            out.write(f"{identity_key(e)}\t{(header + buf.getvalue()).hex()}\n")


def decode(schema_path, in_path):
    schema, header = load(schema_path)
    for line in open(in_path):
        value = bytes.fromhex(line.strip())
        if value[:10] != header:
            sys.exit(f"header {value[:10].hex()} is not {header.hex()}")
        record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, return_record_name=True)
        branch, body = record["outcome"]
        record["outcome"] = {"type": branch, **body}
        print(json.dumps(record, sort_keys=True, default=millis))


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def millis(value):
    """fastavro reads timestamp-millis as datetime; back to exact integer ms."""
    return (value - EPOCH) // datetime.timedelta(milliseconds=1)


if __name__ == "__main__":
    {"encode": encode, "decode": decode}[sys.argv[1]](sys.argv[2], sys.argv[3])
