#!/usr/bin/env bash
# Hub benchmark on one synthetic stream (revisions, withdrawals, joint
# outcomes, repeats), published once to a fresh topic, then measured in turn:
#   1. raw drain: kcat (plain librdkafka, no decoding) reads the whole topic;
#   2. catch-up: a fresh rollup from its start until it has consumed the
#      whole topic (events/s, peak RSS, and as a fraction of the raw drain);
#   3. restart: the rollup killed (-9), a few new rows published by an agent,
#      then from the new rollup's start until they are counted;
#   4. as-of and diff: `report --as-of` / `--diff-from` in mid-publication;
#   5. rebuild: `rollup --rebuild` replays the topic beside the store;
#   6. agent: deploy/local/bench-agent.sh on its own topic.
# usage: deploy/local/bench.sh [REPORTS] [SHAPE]
#   REPORTS: default 100000 (about 220,000 events in the mixed shape)
#   SHAPE:   mixed (default), separate (one outcome per report) or
#            one-outcome (every report under one joint_ref)
# BENCH_SIGNED=1: every force's events signed (keys made here for the run)
# and a hub that requires signatures, so the figure includes verification.
# BENCH_RESTART_ROWS: new rows published before the restart (default 100).
# BENCH_AGENT_ROWS: rows for bench-agent.sh (default twice REPORTS).
# JOINTOPS_NO_BUILD=1: use target/release/jointops as it is (no cargo).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
# shellcheck source=deploy/local/bench-lib.sh
source "$here/bench-lib.sh"
reports="${1:-100000}"
shape="${2:-mixed}"
restart_rows="${BENCH_RESTART_ROWS:-100}"
agent_rows="${BENCH_AGENT_ROWS:-$(( reports * 2 ))}"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export JOINTOPS__KAFKA__BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
run_id="$(date +%s)"
topic="bench.$run_id"
export JOINTOPS__KAFKA__TOPIC="$topic" JOINTOPS__KAFKA__DLQ_TOPIC="$topic.dlq"
work="$(mktemp -d)"
store="$work/bench.sqlite"
export JOINTOPS__STORE__PATH="$store"
pid=
cleanup() {
  # Only the rollup this script started, by its id.
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; fi
  delete_topic "$topic"
  delete_topic "$topic.dlq"
  rm -rf "$work"
}
trap cleanup EXIT

[[ -n "${JOINTOPS_NO_BUILD:-}" ]] || { "$here/build-deps.sh" && cargo build --release --quiet; }
# A copy, so that a rebuild of target/ during the run cannot mix two builds.
cp target/release/jointops "$work/jointops" || die "no target/release/jointops (build it, or retry once a build has finished)"
bin="$work/jointops"
"$bin" --help >/dev/null || die "$bin does not run"
# JOINTOPS_BIN: another build's binary for the rollup (to compare builds);
# the stream is always published by this checkout's.
rollup_bin="${JOINTOPS_BIN:-$bin}"
cfg="$here/bench-hub.toml"
need kcat kcat
need /usr/bin/time time
need jq jq
need sqlite3 sqlite3

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
[[ "$events" =~ ^[0-9]+$ && "$events" -gt 0 ]] || die "cannot read the event count from loadgen's output: $(cat "$work/loadgen.txt")"

# 1. Raw drain: what the broker and a plain librdkafka consumer cost on
# their own, the ceiling for any consumer. One line per message (its
# timestamp, which also dates the publication for the as-of figures); the
# payload is fetched but not printed or decoded. kcat ends at the end of the
# partitions, which librdkafka only reports after one more, empty, fetch, and
# the broker holds that fetch for fetch.wait.max.ms (librdkafka's default
# 500 ms) waiting for data; librdkafka 2.0 also backs a partition off for
# fetch.error.backoff.ms (500 ms) now and then. Both are idle time, not
# reading (the rollup's figure ends when its store has the last offset, with
# no such wait), so the figure is timed with both at 10 ms, best of three
# (it is a ceiling), and one run with the defaults shows the difference.
drain() { # OUT KCAT_ARGS...
  local out=$1
  shift
  local start
  start=$(date +%s%N)
  kcat -C -q -b "$JOINTOPS__KAFKA__BOOTSTRAP" -t "$topic" -o beginning -e "$@" -f '%T\n' >"$out" || die "kcat failed to drain $topic"
  drain_ms=$(ms_since "$start")
  drained=$(wc -l <"$out")
  [[ "$drained" -eq "$events" ]] || die "kcat read $drained messages from $topic, loadgen published $events"
}
drain "$work/drain-default.txt"
default_ms=$drain_ms
raw_ms=
for _ in 1 2 3; do
  drain "$work/drain.txt" -X fetch.wait.max.ms=10 -X fetch.error.backoff.ms=10
  if [[ -z "$raw_ms" ]] || (( drain_ms < raw_ms )); then raw_ms=$drain_ms; fi
done
raw_rate=$(rate "$events" "$raw_ms")
echo "raw drain (kcat, librdkafka $(kcat -V 2>&1 | sed -n 's/.*librdkafka \([0-9.]*\).*/\1/p'), fetch waits 10 ms) read $drained of $events messages in $raw_ms ms (best of 3): $raw_rate events/s (with librdkafka's default 500 ms waits: $default_ms ms, $(rate "$events" "$default_ms") events/s)"

# 2. Catch-up from an empty store, until the store has the topic's last
# offsets (polled as for the restart below, rather than `lag --wait`, which
# looks every 200 ms and would wait on if the rollup died).
end_offsets=$(topic_end)
(( end_offsets == events )) || die "the topic's partitions end at $end_offsets in all, loadgen published $events"
start=$(date +%s%N)
RUST_LOG=warn "$rollup_bin" rollup --config "$cfg" 2>"$work/rollup.log" &
pid=$!
poll_until "catch-up" 600 "$pid" "$work/rollup.log" counted "$store" "$end_offsets"
end=$done_ns
rss_kb=$(vm_hwm_kb "$pid")
ms=$(( (end - start) / 1000000 ))
catchup_rate=$(rate "$events" "$ms")
echo "rollup caught up on $events events ($label) in $ms ms: $(( events * 1000 / ms )) events/s (from process start, state load and topic assignment included); peak RSS $(( rss_kb / 1024 )) MiB"
caught_reports=$(store_reports "$store")
echo "rollup catch-up: $(ratio "$catchup_rate" "$raw_rate") × raw drain; peak RSS $(( rss_kb * 1024 / caught_reports )) bytes per report ($caught_reports reports)"
echo "dead letters: $("$bin" dlq list --config "$cfg" --format csv | tail -n +2 | wc -l)"

# 3. Restart: a crash (no shutdown, nothing flushed), then new rows from a
# force's agent, then the time from the new rollup's start (state loaded from
# the store, assignment, the new records) until they are counted.
kill -KILL "$pid"
status=0; wait "$pid" 2>/dev/null || status=$?   # (bash would report "Killed")
[[ "$status" -eq 137 ]] || die "the rollup exited with $status before kill -9"
pid=
mkdir "$work/agent"
cat >"$work/agent/agent.toml" <<TOML
force = "MPS"
state_dir = "state"
[kafka]
bootstrap = "$JOINTOPS__KAFKA__BOOTSTRAP"
topic = "$topic"
[operations.load]
id = "LOAD-2023"
TOML
[[ -z "${BENCH_SIGNED:-}" ]] || sed -i "1a signing_key = \"$work/MPS.key\"" "$work/agent/agent.toml"
# Rows without a joint reference: each is a report of its own, so the store
# must hold exactly restart_rows more reports afterwards.
awk -v n="$restart_rows" 'BEGIN {
  print "record_id,kind,operation,occurred_at,joint_ref,offence_group,people"
  for (i = 0; i < n; i++) printf "RESTART-%d,arrest,LOAD-2023,2023-10-20T%02d:%02d:00Z,,DRUG_SUPPLY,\n", i, i % 24, i % 60
}' >"$work/agent/restart.csv"
# The hub's overrides above are not the agent's: it reads its own config.
env -u JOINTOPS__KAFKA__TOPIC -u JOINTOPS__KAFKA__DLQ_TOPIC -u JOINTOPS__STORE__PATH -u JOINTOPS__KAFKA__BOOTSTRAP \
  JOINTOPS__OPERATIONS__LOAD__SECRET=bench-secret RUST_LOG=error \
  "$bin" agent publish --no-progress --config "$work/agent/agent.toml" "$work/agent/restart.csv" >"$work/agent/summary.txt" ||
  die "agent publish of the restart rows failed: $(cat "$work/agent/summary.txt")"
published=$(awk '$1 == "total" {print $2}' "$work/agent/summary.txt")
[[ "$published" -eq "$restart_rows" ]] || die "the agent published ${published:-?} of $restart_rows restart rows"
end_offsets=$(topic_end)
(( end_offsets == events + restart_rows )) || die "the topic's partitions end at $end_offsets in all, expected $events + $restart_rows"
start=$(date +%s%N)
RUST_LOG=warn "$rollup_bin" rollup --config "$cfg" 2>>"$work/rollup.log" &
pid=$!
poll_until "restart" 300 "$pid" "$work/rollup.log" counted "$store" "$end_offsets"
restart_ms=$(ms_since "$start" "$done_ns")
restart_reports=$(store_reports "$store")
echo "rollup restart after kill -9 counted $restart_rows new rows in $restart_ms ms from process start (lag polled every ~$poll_ms ms); $restart_reports reports in the store"
(( restart_reports == caught_reports + restart_rows )) || die "the store holds $restart_reports reports after the restart, expected $caught_reports + $restart_rows"
kill -TERM "$pid"; wait "$pid"; pid=

# 4. As-of and diff, from the store the restart left (no rollup running, so
# the report has the cores to itself). Moments inside the publication, from
# the messages' own timestamps as kcat read them.
read -r t_first t_last < <(sort -n "$work/drain.txt" | sed -n '1p;$p' | paste -sd' ')
as_of=$(rfc3339_ms $(( (t_first + t_last) / 2 )))
diff_from=$(rfc3339_ms $(( t_first + (t_last - t_first) / 4 )))
diff_to=$(rfc3339_ms $(( t_first + (t_last - t_first) * 3 / 4 )))
timed "$work/asof.json" "$bin" report --config "$cfg" --operation LOAD-2023 --as-of "$as_of" --format json
asof_ms=$run_ms asof_rss_kb=$run_rss_kb
jq -e '.totals | type == "object" and length > 0' "$work/asof.json" >/dev/null || die "report --as-of gave no totals in JSON: $(head -c 300 "$work/asof.json")"
echo "report --as-of $as_of (mid-publication): $asof_ms ms, peak RSS $(( asof_rss_kb / 1024 )) MiB, $(wc -c <"$work/asof.json") bytes of JSON ($(jq .totals.arrests "$work/asof.json") arrests then)"
timed "$work/diff.json" "$bin" report --config "$cfg" --operation LOAD-2023 --diff-from "$diff_from" --as-of "$diff_to" --format json
diff_ms=$run_ms diff_rss_kb=$run_rss_kb
jq -e '.totals | type == "object" and length > 0' "$work/diff.json" >/dev/null || die "report --diff-from gave no JSON: $(head -c 300 "$work/diff.json")"
echo "report --diff-from $diff_from --as-of $diff_to: $diff_ms ms, peak RSS $(( diff_rss_kb / 1024 )) MiB, $(wc -c <"$work/diff.json") bytes of JSON"

# 5. Rebuild: the whole topic (now with the restart rows) into
# <store>.rebuild. Caught up when that store's lag is zero; the swap comes at
# the rollup's next once-a-second check, so both are timed. The swap would
# remove <store>.rebuild, so its log line counts as caught up too.
all_events=$(( events + restart_rows ))
"$bin" report --config "$cfg" --operation LOAD-2023 --format json | jq -S 'del(.generated_at)' >"$work/live.json"
start=$(date +%s%N)
RUST_LOG=info "$rollup_bin" rollup --config "$cfg" --rebuild 2>"$work/rebuild.log" &
pid=$!
swapped() { grep -q 'Rebuilt store swapped in' "$work/rebuild.log"; }
# Nothing has been published since the restart: the same ends apply.
rebuild_caught_up() { counted "$store.rebuild" "$end_offsets" || swapped; }
poll_until "rebuild" 900 "$pid" "$work/rebuild.log" rebuild_caught_up
rebuild_ms=$(ms_since "$start" "$done_ns")
rebuild_poll_ms=$poll_ms
poll_until "rebuild swap" 60 "$pid" "$work/rebuild.log" swapped
swap_ms=$(ms_since "$start" "$done_ns")
rebuild_rss_kb=$(vm_hwm_kb "$pid")
kill -TERM "$pid"; wait "$pid"; pid=
rebuild_rate=$(rate "$all_events" "$rebuild_ms")
echo "rollup --rebuild caught up on $all_events events in $rebuild_ms ms: $rebuild_rate events/s, $(ratio "$rebuild_rate" "$raw_rate") × raw drain (lag polled every ~$rebuild_poll_ms ms); swapped in at $swap_ms ms; peak RSS $(( rebuild_rss_kb / 1024 )) MiB"
[[ "$(store_reports "$store")" -eq "$restart_reports" ]] || die "the rebuilt store holds $(store_reports "$store") reports, the live one $restart_reports"
"$bin" report --config "$cfg" --operation LOAD-2023 --format json | jq -S 'del(.generated_at)' | cmp -s - "$work/live.json" ||
  die "the rebuilt store's totals differ from the live store's"

# 6. The agent's publication, on its own topic (bench-agent.sh makes and
# deletes it); the hub's overrides must not reach its agent.
env -u JOINTOPS__KAFKA__TOPIC -u JOINTOPS__KAFKA__DLQ_TOPIC -u JOINTOPS__STORE__PATH -u JOINTOPS__KAFKA__BOOTSTRAP \
  JOINTOPS_BIN="$bin" "$here/bench-agent.sh" "$agent_rows" >"$work/agent.txt" 2>"$work/agent.err" ||
  die "bench-agent.sh failed: $(cat "$work/agent.txt" "$work/agent.err")"
agent_line=$(grep '^agent published' "$work/agent.txt") || die "no figure line from bench-agent.sh: $(cat "$work/agent.txt")"
echo "$agent_line"
agent_rate=$(sed -n 's/.*: \([0-9]*\) rows\/s.*/\1/p' <<<"$agent_line")

echo
echo "summary ($label, $reports reports, $events events; ratios: events/s against the raw drain's)"
printf '%-34s %28s  %s\n' figure value "× raw drain" \
  "raw drain (kcat)" "$raw_rate events/s" "1.000" \
  "  with librdkafka's 500 ms waits" "$(rate "$events" "$default_ms") events/s" "$(ratio "$(rate "$events" "$default_ms")" "$raw_rate")" \
  "rollup catch-up, empty store" "$catchup_rate events/s" "$(ratio "$catchup_rate" "$raw_rate")" \
  "rollup --rebuild, caught up" "$rebuild_rate events/s" "$(ratio "$rebuild_rate" "$raw_rate")" \
  "rollup --rebuild, swapped in" "$swap_ms ms" "" \
  "restart after kill -9 to lag 0" "$restart_ms ms" "" \
  "  reports in the store then" "$restart_reports" "" \
  "report --as-of" "$asof_ms ms, $(( asof_rss_kb / 1024 )) MiB" "" \
  "report --diff-from --as-of" "$diff_ms ms, $(( diff_rss_kb / 1024 )) MiB" "" \
  "agent publish" "$agent_rate rows/s" "" \
  "rollup peak RSS (catch-up)" "$(( rss_kb / 1024 )) MiB" "" \
  "  per report" "$(( rss_kb * 1024 / caught_reports )) bytes" ""
