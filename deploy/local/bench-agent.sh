#!/usr/bin/env bash
# Agent throughput benchmark: a synthetic export of ROWS rows (arrests and
# engagements, four in five with a joint reference to pseudonymise), handed
# to a fresh agent with `agent publish` against the local broker. Timed from
# process start to its exit, which comes after Kafka has acknowledged every
# message (acks=all) and the outbox is empty: read, validate, pseudonymise,
# plan, the fsync'd ledger and outbox, encode, produce, acknowledge. Then
# the same export once more, which finds every row unchanged.
# usage: deploy/local/bench-agent.sh [ROWS]   (default 200000)
#        BENCH_SIGNED=1 deploy/local/bench-agent.sh [ROWS]   every record signed (a key made for the run)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
rows="${1:-200000}"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
run_id="$(date +%s)"
topic="bench-agent.$run_id"
work="$(mktemp -d)"
bin="${JOINTOPS_BIN:-target/release/jointops}"   # JOINTOPS_BIN: another build, to compare
trap 'rm -rf "$work"' EXIT

[[ -n "${JOINTOPS_BIN:-}" ]] || { "$here/build-deps.sh" && cargo build --release --quiet; }
# A broker already answering (started from another checkout, say) is used as it is.
(exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null || "$here/kafka.sh" start >/dev/null
"$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
  --create --topic "$topic" --partitions 6 --replication-factor 1 >/dev/null

cat >"$work/agent.toml" <<TOML
force = "MPS"
state_dir = "state"
[kafka]
bootstrap = "127.0.0.1:$KAFKA_PORT"
topic = "$topic"
[operations.load]
id = "LOAD-2023"
TOML
signed="unsigned"
if [[ -n "${BENCH_SIGNED:-}" ]]; then
  "$bin" keys generate --force MPS --id MPS-BENCH --out "$work/mps.key" >/dev/null 2>&1
  sed -i '1a signing_key = "mps.key"' "$work/agent.toml"
  signed="signed"
fi
export JOINTOPS__OPERATIONS__LOAD__SECRET="bench-secret"
awk -v n="$rows" 'BEGIN {
  print "record_id,kind,operation,occurred_at,joint_ref,offence_group,people"
  for (i = 0; i < n; i++) {
    at = sprintf("2023-10-%02dT%02d:%02d:00Z", 10 + i % 5, i % 24, i % 60)
    ref = (i % 5 == 0) ? "" : sprintf("JA-2023-%06d", i % 50000)
    if (i % 10 == 0) printf "R%d,arrest,LOAD-2023,%s,%s,DRUG_SUPPLY,\n", i, at, ref
    else printf "R%d,engagement,LOAD-2023,%s,%s,,%d\n", i, at, ref, 1 + (i * 13) % 50
  }
}' >"$work/export.csv"
mb=$(( $(stat -c %s "$work/export.csv") / 1048576 ))

# One timed `agent publish` of the export: sets ms, and the summary's
# total row's column COLUMN (2 published, 3 unchanged) as count.
timed_publish() { # COLUMN SUMMARY_FILE
  local start end
  start=$(date +%s%N)
  RUST_LOG=warn "$bin" agent publish --no-progress --config "$work/agent.toml" "$work/export.csv" >"$2"
  end=$(date +%s%N)
  count=$(awk -v c="$1" '$1 == "total" {print $c}' "$2")
  ms=$(( (end - start) / 1000000 ))
}

timed_publish 2 "$work/summary.txt"
echo "agent published $count of $rows rows ($mb MiB of CSV, $signed) in $ms ms: $(( rows * 1000 / ms )) rows/s (process start to the last acknowledgement; outbox fsync'd per batch)"

# The same export again: every row is looked up in the ledger and found
# unchanged, so nothing is sent (a force re-exporting everything each day).
timed_publish 3 "$work/summary2.txt"
echo "agent found $count of $rows rows unchanged on a second run in $ms ms: $(( rows * 1000 / ms )) rows/s"
"$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --delete --topic "$topic" >/dev/null 2>&1 || true
