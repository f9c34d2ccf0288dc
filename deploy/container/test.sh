#!/usr/bin/env bash
# Runs the image for real, each part in a container of its own with the
# restrictions of production (read-only root, no capabilities, no new
# privileges, the image's non-root user), against the local brokers:
#   1. `jointops --version` is this checkout's version;
#   2. an agent (`agent publish`) sends a small export to the plaintext
#      broker, from its state volume;
#   3. a rollup counts it into the hub's store on a named volume (`lag
#      --wait`, from a third container on the same volume); its /metrics
#      answers, the image's HEALTHCHECK passes on it, and its logs are
#      JSON lines (the image's default);
#   4. serve answers /healthz and /readyz, the image's HEALTHCHECK passes,
#      and a coordinator token reads the joint totals the export makes;
#   5. SIGTERM stops serve and the rollup, each within 10 s with exit 0;
#   6. the hub logs in to the secure broker (SASL_SSL, SCRAM-SHA-512, the
#      broker's CA) from the image: TLS with the image's libssl3.
# usage: deploy/container/test.sh [IMAGE]   (default: the last one build.sh built)
#   KAFKA_PORT, KAFKA_SASL_PORT, KAFKA_SECRETS: other brokers than deploy/local's defaults
# Needs podman (build.sh installs it) and both local brokers
# (deploy/local/kafka.sh start; KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh start):
# fails, loudly, without them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
step() { printf '\n== container test: %s\n' "$*"; }
die() { printf 'container test: FAILED: %s\n' "$*" >&2; exit 1; }

command -v podman >/dev/null || die "podman is missing (deploy/container/build.sh installs it and builds the image)"
export CONTAINERS_CONF="$repo/target/container/containers.conf"
[[ -f $CONTAINERS_CONF ]] || die "no $CONTAINERS_CONF: run deploy/container/build.sh first"
image="${1:-$(cat "$repo/target/container/image" 2>/dev/null || true)}"
[[ -n $image ]] || die "no image: run deploy/container/build.sh first, or pass one"
podman image exists "$image" || die "image $image is not in podman's store"
port="${KAFKA_PORT:-9092}"
sasl_port="${KAFKA_SASL_PORT:-9093}"
bootstrap="127.0.0.1:$port"
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
    || die "no Kafka broker on $bootstrap (deploy/local/kafka.sh start)"
(exec 3<>"/dev/tcp/127.0.0.1/$sasl_port") 2>/dev/null \
    || die "no secure Kafka broker on 127.0.0.1:$sasl_port (KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh start)"

run_id="ct$(date +%s)$$"
work=$(mktemp -d)
api_port=$((18000 + RANDOM % 1000))
metrics_port=$((api_port + 1000))
topic="container-test.$run_id"
vol_hub="jointops-test-hub-$run_id"
vol_agent="jointops-test-agent-$run_id"
containers=()
cleanup() {
    local c
    for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
    podman volume rm -f "$vol_hub" "$vol_agent" >/dev/null 2>&1 || true
    for t in "$topic" "$topic.dlq"; do
        deploy/local/kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
            --delete --topic "$t" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# The restrictions every container here runs with.
restricted=(--read-only --cap-drop ALL --security-opt no-new-privileges --network host)
jo() { # jointops in a one-off container with the hub's volume and config
    podman run --rm "${restricted[@]}" -v "$vol_hub:/var/lib/jointops" -v "$work/etc:/etc/jointops:ro" "$image" "$@"
}

step "jointops --version ($image)"
want="jointops $(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)"
got=$(podman run --rm "${restricted[@]}" "$image" --version)
[[ $got == "$want" ]] || die "--version printed '$got', want '$want'"
echo "$got; runs as $(podman image inspect --format '{{.Config.User}}' "$image")," \
    "$(( $(podman image inspect --format '{{.Size}}' "$image") / 1000000 )) MB"

step "config, topics $topic(.dlq) and volumes"
mkdir -p "$work/etc" "$work/exports"
cat >"$work/etc/hub.toml" <<TOML
[kafka]
bootstrap = "$bootstrap"
topic = "$topic"
dlq_topic = "$topic.dlq"
group = "container-test-$run_id"
partitions = 3
[store]
path = "/var/lib/jointops/hub.sqlite"
[api]
listen = "127.0.0.1:$api_port"
[metrics]
listen = "127.0.0.1:$metrics_port"
[trust]
require_signatures = false
[[operations]]
id = "CT-2023"
starts = "2023-10-09T00:00:00+01:00"
ends = "2023-10-16T00:00:00+01:00"
forces = ["MPS", "KENT"]
TOML
cat >"$work/etc/agent.toml" <<TOML
force = "MPS"
state_dir = "/var/lib/jointops/state"
[kafka]
bootstrap = "$bootstrap"
topic = "$topic"
[operations.ct]
id = "CT-2023"
TOML
# Three arrests, one of them joint.
cat >"$work/exports/mps.csv" <<'CSV'
record_id,kind,operation,occurred_at,joint_ref,offence_group,people
A1,arrest,CT-2023,2023-10-10T09:00:00Z,,DRUG_SUPPLY,
A2,arrest,CT-2023,2023-10-10T10:00:00Z,,DRUG_SUPPLY,
A3,arrest,CT-2023,2023-10-11T11:00:00Z,JA-1,WEAPONS,
CSV
chmod -R a+rX "$work"
for t in "$topic" "$topic.dlq"; do
    deploy/local/kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
        --create --topic "$t" --partitions 3 --replication-factor 1 >/dev/null
done
podman volume create "$vol_hub" >/dev/null
podman volume create "$vol_agent" >/dev/null

step "agent publish (a force's agent, its state on a volume)"
podman run --rm "${restricted[@]}" -v "$vol_agent:/var/lib/jointops" -v "$work/etc:/etc/jointops:ro" \
    -v "$work/exports:/srv/exports:ro" -e JOINTOPS__OPERATIONS__CT__SECRET=container-test-secret \
    "$image" agent publish --no-progress --config /etc/jointops/agent.toml /srv/exports/mps.csv \
    | tee "$work/publish.txt"
grep -qE '^total +3 ' "$work/publish.txt" || die "the agent did not publish 3 records"

step "rollup (the hub's store on volume $vol_hub)"
containers+=("$run_id-rollup")
podman run -d --name "$run_id-rollup" "${restricted[@]}" -v "$vol_hub:/var/lib/jointops" -v "$work/etc:/etc/jointops:ro" \
    -e "JOINTOPS_HEALTHCHECK_URL=http://127.0.0.1:$metrics_port/metrics" "$image" rollup --config /etc/jointops/hub.toml >/dev/null
jo lag --config /etc/jointops/hub.toml --wait 90 | tail -1
podman ps --filter "name=$run_id-rollup" --format '{{.Status}}' | grep -q '^Up' || die "the rollup container stopped: $(podman logs "$run_id-rollup" 2>&1 | tail -5)"
scrape=$(curl -sf "http://127.0.0.1:$metrics_port/metrics") || die "the rollup's /metrics did not answer"
grep -q '^jointops_rollup_heartbeat_timestamp_seconds' <<<"$scrape" || die "the rollup's /metrics has no heartbeat"
echo "rollup /metrics: $(grep -c '^jointops_' <<<"$scrape") jointops samples; $(grep '^jointops_rollup_partitions_owned' <<<"$scrape")"
podman healthcheck run "$run_id-rollup" || die "the image's HEALTHCHECK failed on the rollup (its /metrics)"
echo "HEALTHCHECK on the rollup (JOINTOPS_HEALTHCHECK_URL=…/metrics): healthy"
# Logs are JSON by default in the image: every line of the rollup's is an object.
podman logs "$run_id-rollup" 2>&1 | python3 -c '
import json, sys
lines = [l for l in sys.stdin if l.strip()]
assert lines, "the rollup logged nothing"
for l in lines:
    assert isinstance(json.loads(l), dict), l
print(f"rollup logs: {len(lines)} lines, each a JSON object")' || die "the rollup's logs are not JSON lines"

step "serve on 127.0.0.1:$api_port (same volume), /healthz, /readyz, HEALTHCHECK, totals"
containers+=("$run_id-serve")
podman run -d --name "$run_id-serve" "${restricted[@]}" -v "$vol_hub:/var/lib/jointops" -v "$work/etc:/etc/jointops:ro" \
    -e "JOINTOPS_HEALTHCHECK_URL=http://127.0.0.1:$api_port/healthz" "$image" serve --config /etc/jointops/hub.toml >/dev/null
ready=0
for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.2
done
((ready)) || die "serve's /readyz did not answer 200 within 20 s: $(podman logs "$run_id-serve" 2>&1 | tail -5)"
echo "/healthz: $(curl -sf "http://127.0.0.1:$api_port/healthz")"
echo "/readyz: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$api_port/readyz")"
podman healthcheck run "$run_id-serve" || die "the image's HEALTHCHECK failed on serve"
echo "HEALTHCHECK: healthy ($(podman image inspect --format '{{join .Config.Healthcheck.Test " "}}' "$image"))"
token=$(jo token issue --config /etc/jointops/hub.toml --role coordinator --label container-test 2>/dev/null | tail -1)
totals=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$api_port/api/v1/operations/CT-2023/totals")
arrests=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["totals"]["arrests"])' <<<"$totals")
[[ $arrests == 3 ]] || die "totals from serve say $arrests arrests, want 3: $totals"
echo "CT-2023 arrests: $arrests (from the rollup's store, through serve)"

stop_clean() { # NAME: SIGTERM, then exit 0 within 10 s
    local name=$1 t0 ms code
    t0=$(date +%s%N)
    podman kill --signal TERM "$name" >/dev/null
    code=$(timeout 12 podman wait "$name" 2>/dev/null | tail -1) || die "$name did not stop within 10 s of SIGTERM"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    ((ms <= 10000)) || die "$name took $ms ms to stop after SIGTERM"
    [[ $code == 0 ]] || die "$name exited $code after SIGTERM: $(podman logs "$name" 2>&1 | tail -5)"
    echo "$name: SIGTERM -> exit 0 in $ms ms"
}
step "SIGTERM stops each cleanly"
stop_clean "$run_id-serve"
stop_clean "$run_id-rollup"

step "the hub logs in to the secure broker (SASL_SSL on 127.0.0.1:$sasl_port) from the image"
props="${KAFKA_SECRETS:-$repo/deploy/local/secrets}/hub.properties"
[[ -f $props ]] || die "no $props (KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh start makes it)"
mkdir -p "$work/secure"
ca=$(awk -F= '$1 == "ssl.ca.location" {print $2}' "$props")
grep -v '^ssl.ca.location=' "$props" >"$work/secure/kafka.properties"
echo "ssl.ca.location=/etc/jointops/secure/ca.pem" >>"$work/secure/kafka.properties"
cp "$ca" "$work/secure/ca.pem"
# The image's user owns its credentials, readable by it alone (jointops refuses others).
chown -R 10001:10001 "$work/secure"
chmod 0600 "$work/secure/kafka.properties"
cat >"$work/secure/hub.toml" <<TOML
[kafka]
properties = "kafka.properties"
[store]
path = "/var/lib/jointops/secure.sqlite"
TOML
out=$(podman run --rm "${restricted[@]}" -v "$vol_hub:/var/lib/jointops" -v "$work/secure:/etc/jointops/secure:ro" \
    "$image" lag --config /etc/jointops/secure/hub.toml 2>&1 || true)
grep -q '^total lag ' <<<"$out" || die "lag over SASL_SSL failed: $out"
echo "lag over SASL_SSL/SCRAM-SHA-512: $(tail -1 <<<"$out")"

echo
echo "container test: passed ($image)"
