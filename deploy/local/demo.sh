#!/usr/bin/env bash
# The jointops demo: a real Kafka broker, six partner forces' agents, the hub's
# rollup, and the CLIW-2023-10 joint totals checked against the published
# figures. Run from anywhere: deploy/local/demo.sh
#
# It runs secure (contract §7): the broker with TLS, SCRAM logins and ACLs,
# each agent logged in as its force and signing with its force's key, and a
# hub that counts only signed records. KAFKA_SECURITY=plaintext runs it on a
# plaintext broker with unsigned records instead, for a quick trial.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
SECONDS=0
say() { printf '\n== %s\n' "$*"; }

export KAFKA_SECURITY="${KAFKA_SECURITY:-sasl_ssl}"
forces="MPS KENT ESSEX SUSSEX HERTS TVP BTP"
secrets="$here/secrets"
if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
    export KAFKA_FORCES="$forces"
    bootstrap="127.0.0.1:${KAFKA_SASL_PORT:-9093}"
    tools_auth=(--command-config "$secrets/admin.java.properties")
else
    export KAFKA_PORT="${KAFKA_PORT:-9092}"
    bootstrap="127.0.0.1:$KAFKA_PORT"
    tools_auth=()
fi
export JOINTOPS__KAFKA__BOOTSTRAP="$bootstrap"
# The hub's config for this run (deploy/local/hub.toml with the broker's
# login and the forces' public keys), written below.
hub="$here/data/hub.toml"
bin="$repo/target/release/jointops"
op="CLIW-2023-10"

say "Rust toolchain and build"
if ! command -v cargo >/dev/null; then
    echo "cargo is missing: install Rust (https://rustup.rs) and run again" >&2
    exit 1
fi
"$here/build-deps.sh" # cmake, g++, libssl-dev, pkg-config: librdkafka is built from source
cargo build --release --quiet

say "Kafka broker on $bootstrap ($KAFKA_SECURITY)"
"$here/kafka.sh" start

say "Fresh topics and state"
rollup_pid_file="$here/data/rollup.pid"
if [[ -f "$rollup_pid_file" ]] && kill -0 "$(cat "$rollup_pid_file")" 2>/dev/null; then
    kill -TERM "$(cat "$rollup_pid_file")"
    while kill -0 "$(cat "$rollup_pid_file")" 2>/dev/null; do sleep 0.2; done
fi
rm -rf "$here/data" "$here/state" "$here/exports"
mkdir -p "$here/data"
topics() { "$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" "${tools_auth[@]}" "$@"; }
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

say "Signing keys and the hub's config (deploy/local/data/hub.toml)"
mkdir -p "$here/state/keys"
chmod 700 "$here/state" "$here/state/keys"
python3 - "$here/hub.toml" "$hub" "$KAFKA_SECURITY" "$secrets/hub.properties" "$here/data/hub.sqlite" <<'PY'
import re, sys
src, dst, security, props, store = sys.argv[1:]
text = open(src).read()
text = re.sub(r'(?m)^path = "data/hub.sqlite"$', f'path = "{store}"', text)
if security == "sasl_ssl":
    # The login comes from the hub principal's properties file.
    text = re.sub(r'(?m)^\[kafka\]$', f'[kafka]\nproperties = "{props}"', text, count=1)
    text = re.sub(r'(?m)^require_signatures = false$', 'require_signatures = true', text)
open(dst, "w").write(text)
PY
if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
    for f in $forces; do
        "$bin" keys generate --force "$f" --id "$f-DEMO-1" --out "$here/state/keys/$f.key" >>"$hub" 2>>"$here/data/keys.log"
    done
    echo "  $(echo $forces | wc -w) forces, each with a broker login (deploy/local/secrets/<FORCE>.properties) and an Ed25519 key (deploy/local/state/keys/<FORCE>.key, 0600)"
fi

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
agent() { # SUBCOMMAND FORCE ARGS...
    local cmd=$1 force=$2 secure=()
    shift 2
    if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
        # Logged in as the force, signing with its key.
        secure=(JOINTOPS__KAFKA__PROPERTIES="$secrets/$force.properties" JOINTOPS__SIGNING_KEY="$here/state/keys/$force.key")
    fi
    env ${secure[@]+"${secure[@]}"} \
        JOINTOPS__OPERATIONS__CLIW_2023_10__SECRET="demo-secret-cliw-2023-10" \
        JOINTOPS__OPERATIONS__CLIW_2023_11__SECRET="demo-secret-cliw-2023-11" \
        "$bin" agent "$cmd" --config "$here/agents/$force.toml" "$@"
}
runs="$here/data/agent-runs.jsonl"
: >"$runs"
publish() { # FORCE FILE
    local code=0
    agent publish "$1" --json --no-progress "$here/exports/$2" >>"$runs" 2>>"$here/data/agents.log" || code=$?
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
agent resend KENT 2>>"$here/data/agents.log"
if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
    planted=unsigned
    say "The admin writes a record that is not Avro, and unsigned (dead-lettered as unsigned: nothing unauthenticated is parsed)"
else
    planted=undecodable
    say "A third party writes a record that is not Avro (dead-lettered as undecodable)"
fi
printf '%s\t%s\n' "$op/MPS/garbage-1" "this is not an Avro single-object value" |
    "$here/kafka.sh" tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$bootstrap" "${tools_auth[@]/--command-config/--producer.config}" \
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
python3 "$here/check_demo.py" "$here/exports/expected.json" "$here/data/report.json" "$runs" "$planted"
if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
    python3 "$here/no_credentials.py" "$bootstrap" "$secrets/ca.pem"
    echo "    Secure: every agent logged in as its force over TLS (SCRAM-SHA-512) and signed each record with its force's Ed25519 key; the hub required signatures, and a client without credentials is refused."
fi

token=$("$bin" token issue --config "$hub" --role coordinator --label "demo coordinator" 2>/dev/null)
stop="deploy/local/kafka.sh stop"
[[ $KAFKA_SECURITY == sasl_ssl ]] && stop="KAFKA_SECURITY=sasl_ssl $stop"
printf "\nDemo finished in %d s (%s). The broker is still running (%s stops it).\n" "$SECONDS" "$KAFKA_SECURITY" "$stop"
echo "Explore: target/release/jointops report --config deploy/local/data/hub.toml --operation $op --format json"
echo "Dashboard: target/release/jointops serve --config deploy/local/data/hub.toml"
echo "           then open http://127.0.0.1:8080/#token=$token&operation=$op"
