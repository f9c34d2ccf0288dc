#!/usr/bin/env bash
# API benchmark: a store with REPORTS reports (default 1,000,000, about 2.2
# million events), then the response time of the totals, timeline and as-of
# endpoints of `jointops serve`, measured with curl from another process.
# usage: deploy/local/bench-api.sh [REPORTS] [REQUESTS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
reports="${1:-1000000}"
requests="${2:-300}"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export JOINTOPS__KAFKA__BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
run_id="$(date +%s)"
export JOINTOPS__KAFKA__TOPIC="bench-api.$run_id" JOINTOPS__KAFKA__DLQ_TOPIC="bench-api.$run_id.dlq"
work="$(mktemp -d)"
export JOINTOPS__STORE__PATH="$work/bench.sqlite"
export JOINTOPS__API__LISTEN="127.0.0.1:${BENCH_API_PORT:-18080}"
bin=target/release/jointops
cfg="$here/bench-hub.toml"
cleanup() {
    [[ -n "${serve_pid:-}" ]] && kill "$serve_pid" 2>/dev/null || true
    [[ -n "${rollup_pid:-}" ]] && kill "$rollup_pid" 2>/dev/null || true
    for t in "$JOINTOPS__KAFKA__TOPIC" "$JOINTOPS__KAFKA__DLQ_TOPIC"; do
        "$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$JOINTOPS__KAFKA__BOOTSTRAP" --delete --topic "$t" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

"$here/build-deps.sh"
cargo build --release --quiet
"$here/kafka.sh" start >/dev/null
"$bin" loadgen --config "$cfg" --reports "$reports" --seed 7
RUST_LOG=warn "$bin" rollup --config "$cfg" 2>"$work/rollup.log" &
rollup_pid=$!
"$bin" lag --config "$cfg" --wait 1800 | tail -1
kill -TERM "$rollup_pid"; wait "$rollup_pid"; rollup_pid=
echo "store: $(du -h "$JOINTOPS__STORE__PATH" | cut -f1), $(sqlite3 "$JOINTOPS__STORE__PATH" 'SELECT COUNT(*) FROM reports' 2>/dev/null || echo '?') reports"

token=$("$bin" token issue --config "$cfg" --role coordinator --label bench 2>/dev/null)
RUST_LOG=warn "$bin" serve --config "$cfg" 2>"$work/serve.log" &
serve_pid=$!
base="http://$JOINTOPS__API__LISTEN"
for _ in $(seq 1 100); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done

measure() { # NAME PATH COUNT
    local out="$work/$1.times"
    for _ in $(seq 1 "$3"); do
        curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "$base$2" >>"$out"
    done
    sort -n "$out" | awk -v name="$1" '{ t[NR] = $1 } END {
        printf "%-10s %5d requests: median %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms\n",
            name, NR, t[int(NR*0.5)+1]*1000, t[int(NR*0.95)]*1000, t[int(NR*0.99)]*1000, t[NR]*1000 }'
}
measure totals /api/v1/operations/LOAD-2023/totals "$requests"
measure timeline /api/v1/operations/LOAD-2023/timeline "$requests"
measure csv /api/v1/operations/LOAD-2023/totals.csv "$requests"
# As of now (a moment in the future is refused): the whole history replayed.
measure as_of "/api/v1/operations/LOAD-2023/totals?as_of=$(date -u +%Y-%m-%dT%H:%M:%SZ)" 3
echo "serve peak RSS: $(awk '/VmHWM/ {print int($2/1024)}' "/proc/$serve_pid/status") MiB"
