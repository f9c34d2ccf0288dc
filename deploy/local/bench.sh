#!/usr/bin/env bash
# Rollup catch-up benchmark: publish a synthetic stream (revisions,
# withdrawals, joint outcomes, repeats), then time a fresh rollup from its
# start until it has consumed the whole topic. Prints events/s and peak RSS.
# usage: deploy/local/bench.sh [REPORTS] [SHAPE]
#   REPORTS: default 100000 (about 220,000 events in the mixed shape)
#   SHAPE:   mixed (default), separate (one outcome per report) or
#            one-outcome (every report under one joint_ref)
# BENCH_SIGNED=1: every force's events signed (keys made here for the run)
# and a hub that requires signatures, so the figure includes verification.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
reports="${1:-100000}"
shape="${2:-mixed}"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export JOINTOPS__KAFKA__BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
run_id="$(date +%s)"
export JOINTOPS__KAFKA__TOPIC="bench.$run_id" JOINTOPS__KAFKA__DLQ_TOPIC="bench.$run_id.dlq"
work="$(mktemp -d)"
export JOINTOPS__STORE__PATH="$work/bench.sqlite"
bin=target/release/jointops
# JOINTOPS_BIN: another build's binary for the rollup (to compare builds);
# the stream is always published by this checkout's.
rollup_bin="${JOINTOPS_BIN:-$bin}"
cfg="$here/bench-hub.toml"

[[ -n "${JOINTOPS_NO_BUILD:-}" ]] || { "$here/build-deps.sh" && cargo build --release --quiet; }
# A broker already answering (started from another checkout, say) is used as it is.
(exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null || "$here/kafka.sh" start >/dev/null
key_args=()
label="$shape"
if [[ -n "${BENCH_SIGNED:-}" ]]; then
  sed 's/^require_signatures = false/require_signatures = true/' "$cfg" >"$work/bench-hub.toml"
  for force in MPS KENT ESSEX SUSSEX HERTS TVP SURREY BTP; do
    "$bin" keys generate --force "$force" --id "BENCH-$force" --out "$work/$force.key" >>"$work/bench-hub.toml" 2>/dev/null
    key_args+=(--signing-key "$work/$force.key")
  done
  cfg="$work/bench-hub.toml"
  label="$shape, signed"
fi
"$bin" loadgen --config "$cfg" --reports "$reports" --seed 1 --shape "$shape" ${key_args[@]+"${key_args[@]}"} | tee "$work/loadgen.txt"
events=$(awk '{print $2}' "$work/loadgen.txt")

start=$(date +%s%N)
RUST_LOG=warn "$rollup_bin" rollup --config "$cfg" 2>"$work/rollup.log" &
pid=$!
"$bin" lag --config "$cfg" --wait 600 >/dev/null
end=$(date +%s%N)
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid"
ms=$(( (end - start) / 1000000 ))
echo "rollup caught up on $events events ($label) in $ms ms: $(( events * 1000 / ms )) events/s (from process start, state load and topic assignment included); peak RSS $(( rss_kb / 1024 )) MiB"
echo "dead letters: $("$bin" dlq list --config "$cfg" --format csv | tail -n +2 | wc -l)"
"$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$JOINTOPS__KAFKA__BOOTSTRAP" --delete --topic "bench.$run_id" >/dev/null 2>&1 || true
"$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$JOINTOPS__KAFKA__BOOTSTRAP" --delete --topic "bench.$run_id.dlq" >/dev/null 2>&1 || true
rm -rf "$work"
