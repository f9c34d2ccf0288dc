"""Checks the demo's report against the scenario's figures and the planted bad input.

usage: check_demo.py EXPECTED_JSON REPORT_JSON AGENT_RUNS_JSONL [PLANTED_REASON]

PLANTED_REASON is what the raw non-Avro record is dead-lettered as:
undecodable on a plaintext trial, unsigned on the secure demo (the
signature is checked before anything is decoded).
"""
import json
import sys

expected = json.load(open(sys.argv[1]))
report = json.load(open(sys.argv[2]))
runs = [json.loads(line)["files"][0] for line in open(sys.argv[3]) if line.strip()]
problems = []

for name, want in expected["totals"].items():
    got = report["totals"].get(name)
    if got != want:
        problems.append(f"joint {name}: report {got}, expected {want}")
for force, row in expected["forces"].items():
    for name, want in row.items():
        got = report["forces"].get(force, {}).get(name)
        if got != want:
            problems.append(f"{force} {name}: report {got}, expected {want}")
if set(report["forces"]) != set(expected["forces"]):
    problems.append(f"forces: report {sorted(report['forces'])}, expected {sorted(expected['forces'])}")

# The demo plants one more dead letter than the exports: the raw non-Avro record.
planted = sys.argv[4] if len(sys.argv) > 4 else "undecodable"
want_dead = dict(expected["dead_letters"])
want_dead[planted] = want_dead.get(planted, 0) + 1
if report["dead_letters"] != want_dead:
    problems.append(f"dead letters: report {report['dead_letters']}, expected {want_dead}")

for i, (want, got) in enumerate(zip(expected["agent_runs"], runs)):
    for k in ("published", "unchanged", "withdrawn", "rejected"):
        if want[k] != got[k]:
            problems.append(f"agent run {i + 1} ({want['file']}): {k} {got[k]}, expected {want[k]}")
rejected = sorted((r["file"].split("exports/")[-1], x["line"]) for r in runs for x in r["rejections"])
want_rejected = sorted((r["file"], r["line"]) for r in expected["rejected_rows"])
if rejected != want_rejected:
    problems.append(f"rejected rows: agents {rejected}, expected {want_rejected}")

if problems:
    print("DEMO CHECK FAILED:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
t = report["totals"]
print(f"OK: all {len(expected['totals'])} joint totals equal the scenario's figures "
      f"(arrests {t['arrests']}, charges {t['charges']}, lines closed {t['lines_closed']}, "
      f"cash £{t['cash_pence'] // 100:,}.{t['cash_pence'] % 100:02d});")
print(f"    per-force view matches the reference model for {len(expected['forces'])} forces;")
print(f"    dead letters {report['dead_letters']}; {len(rejected)} export rows rejected with file and line.")
