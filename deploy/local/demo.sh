#!/usr/bin/env bash
# The jointops demo: a real Kafka broker, six partner forces' agents, the hub's
# rollup, and the CLIW-2023-10 joint totals checked against the published
# figures. Run from anywhere: deploy/local/demo.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
SECONDS=0
say() { printf '\n== %s\n' "$*"; }

export KAFKA_PORT="${KAFKA_PORT:-9092}"
bootstrap="127.0.0.1:$KAFKA_PORT"
export JOINTOPS__KAFKA__BOOTSTRAP="$bootstrap"
hub="$here/hub.toml"
bin="$repo/target/release/jointops"
op="CLIW-2023-10"

say "Rust toolchain and build"
if ! command -v cargo >/dev/null; then
    echo "cargo is missing: install Rust (https://rustup.rs) and run again" >&2
    exit 1
fi
"$here/build-deps.sh" # cmake, g++, libssl-dev, pkg-config: librdkafka is built from source
cargo build --release --quiet

say "Kafka broker on $bootstrap"
"$here/kafka.sh" start

say "Fresh topics and state"
rollup_pid_file="$here/data/rollup.pid"
if [[ -f "$rollup_pid_file" ]] && kill -0 "$(cat "$rollup_pid_file")" 2>/dev/null; then
    kill -TERM "$(cat "$rollup_pid_file")"
    while kill -0 "$(cat "$rollup_pid_file")" 2>/dev/null; do sleep 0.2; done
fi
rm -rf "$here/data" "$here/state" "$here/exports"
mkdir -p "$here/data"
topics() { "$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" "$@"; }
for t in jointops.outcomes jointops.outcomes.dlq; do
    topics --delete --if-exists --topic "$t" >/dev/null
done
# Deletion is asynchronous: wait until both are gone before the rollup recreates them.
for _ in $(seq 1 100); do
    if ! topics --list | grep -qx 'jointops\.outcomes\(\.dlq\)\?'; then break; fi
    sleep 0.3
done

say "Force exports for $op (phase 1: first returns; phase 2: corrected and completed)"
python3 "$here/make_exports.py" "$here/exports"

say "Hub rollup (log: deploy/local/data/rollup.log)"
"$bin" rollup --config "$hub" >"$here/data/rollup.log" 2>&1 &
echo $! >"$rollup_pid_file"
for _ in $(seq 1 100); do
    grep -q "Rollup consuming" "$here/data/rollup.log" && break
    kill -0 "$(cat "$rollup_pid_file")" 2>/dev/null || { cat "$here/data/rollup.log"; exit 1; }
    sleep 0.2
done

# Demo secrets, given to the agents only. In service they arrive the same way,
# from each force's secret store.
agent() {
    JOINTOPS__OPERATIONS__CLIW_2023_10__SECRET="demo-secret-cliw-2023-10" \
        JOINTOPS__OPERATIONS__CLIW_2023_11__SECRET="demo-secret-cliw-2023-11" \
        "$bin" agent "$@"
}
runs="$here/data/agent-runs.jsonl"
: >"$runs"
publish() { # FORCE FILE
    local code=0
    agent publish --config "$here/agents/$1.toml" --json --no-progress "$here/exports/$2" >>"$runs" 2>>"$here/data/agents.log" || code=$?
    # Exit 2 means rows were rejected (reported with file and line); anything else is a failure.
    [[ $code == 0 || $code == 2 ]] || { tail -20 "$here/data/agents.log"; exit 1; }
    python3 - "$runs" <<'PY'
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])["files"][0]
print(f"  {s['file'].split('exports/')[-1]:<22} published {s['published']:>4}  unchanged {s['unchanged']:>4}  withdrawn {s['withdrawn']:>2}  rejected {s['rejected']}")
for r in s["rejections"]:
    print(f"      line {r['line']}: {r['reason']}")
PY
}

say "Agents publish phase 1"
for f in MPS.jsonl KENT.csv ESSEX.jsonl SUSSEX.csv HERTS.jsonl TVP.csv BTP.csv; do publish "${f%.*}" "phase1/$f"; done
say "Agents publish phase 2 (revisions, withdrawals, late joint references)"
for f in MPS.jsonl KENT.csv ESSEX.jsonl SUSSEX.csv HERTS.jsonl TVP.csv; do publish "${f%.*}" "phase2/$f"; done
say "The Met publishes the same export again (nothing new to send)"
publish MPS phase2/MPS.jsonl
say "Kent resends everything it ever published (repeated deliveries)"
agent resend --config "$here/agents/KENT.toml" 2>>"$here/data/agents.log"
say "A third party writes a record that is not Avro (dead-lettered as undecodable)"
printf '%s\t%s\n' "$op/MPS/garbage-1" "this is not an Avro single-object value" |
    "$here/kafka.sh" tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$bootstrap" \
        --topic jointops.outcomes --reader-property parse.key=true --reader-property key.separator=$'\t' >/dev/null

say "Waiting for the rollup to catch up"
"$bin" lag --config "$hub" --wait 120 | tail -1

say "Report: jointops report --config deploy/local/hub.toml --operation $op"
"$bin" report --config "$hub" --operation "$op"
"$bin" report --config "$hub" --operation "$op" --format json >"$here/data/report.json"

say "Stopping the rollup (SIGTERM: it commits and exits)"
kill -TERM "$(cat "$rollup_pid_file")"
while kill -0 "$(cat "$rollup_pid_file")" 2>/dev/null; do sleep 0.2; done
rm -f "$rollup_pid_file"
grep -o 'consumed=[0-9]*.*' "$here/data/rollup.log" | tail -1 || true

say "Checking against the published figures and the planted bad input"
python3 "$here/check_demo.py" "$here/exports/expected.json" "$here/data/report.json" "$runs"

token=$("$bin" token issue --config "$hub" --role coordinator --label "demo coordinator" 2>/dev/null)
printf "\nDemo finished in %d s. The broker is still running (deploy/local/kafka.sh stop stops it).\n" "$SECONDS"
echo "Explore: target/release/jointops report --config deploy/local/hub.toml --operation $op --format json"
echo "Dashboard: target/release/jointops serve --config deploy/local/hub.toml"
echo "           then open http://127.0.0.1:8080/#token=$token&operation=$op"
