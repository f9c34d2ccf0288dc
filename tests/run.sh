#!/usr/bin/env bash
# The test command: formatting, lints, unit/property tests, and the
# integration tests against a real local Kafka broker (started here if none
# is running, and stopped again afterwards).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export JOINTOPS_TEST_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
step() { printf '\n== %s\n' "$*"; }

step "Toolchain"
command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
if command -v rustup >/dev/null; then
    rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed | grep -q '^clippy' || rustup component add clippy
fi
if ! command -v python3 >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi
# librdkafka is built from source by rdkafka-sys: cmake, a C/C++ compiler, OpenSSL's headers.
deploy/local/build-deps.sh
cargo --version

step "Python with fastavro and cryptography (the independent Avro implementation and Ed25519 signer of the interop and trust tests)"
if ! .venv/bin/python -c 'import fastavro, cryptography' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check 'fastavro==1.13.1' 'cryptography==46.0.3'
fi
export JOINTOPS_TEST_PYTHON="$repo/.venv/bin/python"

step "Kafka broker on $JOINTOPS_TEST_BOOTSTRAP"
started_broker=0
if ! deploy/local/kafka.sh status >/dev/null 2>&1; then
    deploy/local/kafka.sh start
    started_broker=1
fi
started_secure=0
stop_broker() {
    if [[ $started_secure == 1 ]]; then KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh stop; fi
    if [[ $started_broker == 1 ]]; then deploy/local/kafka.sh stop; fi
}
trap stop_broker EXIT

step "Secure Kafka broker (SASL_SSL on 127.0.0.1:9093; client properties in deploy/local/secrets/)"
if ! KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh status >/dev/null 2>&1; then
    started_secure=1
fi
# Also when it runs: start adds the principals and ACLs it may lack.
KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh start

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings

step "Chromium and playwright-core (the dashboard's real-browser test)"
if [[ ! -x /usr/bin/chromium ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v npm >/dev/null || { echo "node/npm (Node 20 or later) is missing: the browser test needs it" >&2; exit 1; }
# npm ci whenever a package of the lockfile (playwright-core, axe-core, …) is
# missing from node_modules or there at another version.
locked_ok() {
    (cd tests/browser && node -e '
        const fs = require("fs");
        const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
        const stale = Object.entries(lock.packages).filter(([dir, p]) => dir && !p.dev && (() => {
            try { return JSON.parse(fs.readFileSync(dir + "/package.json", "utf8")).version !== p.version; }
            catch (e) { return true; }
        })());
        if (stale.length) { console.error("tests/browser: missing or stale: " + stale.map(([d]) => d).join(", ")); process.exit(1); }')
}
if ! locked_ok; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
/usr/bin/chromium --version 2>/dev/null || true

step "openssl (the TLS test makes its certificate with it)"
if ! command -v openssl >/dev/null; then
    apt-get update -qq && apt-get install -y -qq openssl >/dev/null
fi

step "promtool (Debian's prometheus package, unpacked into .cache/prometheus; no server runs)"
if [[ ! -x .cache/prometheus/usr/bin/promtool ]]; then
    mkdir -p .cache/prometheus
    (cd .cache && { ls prometheus_*.deb >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }; } \
        && dpkg-deb -x prometheus_*.deb prometheus)
fi
export JOINTOPS_PROMTOOL="$repo/.cache/prometheus/usr/bin/promtool"
"$JOINTOPS_PROMTOOL" --version | head -1

step "cargo test"
cargo test

step "jointops schema check"
cargo run --quiet -- schema check --dir schemas

# Deployment artifacts (deploy/): the image is built and run for real against
# the brokers above; the rest is checked offline.
step "Container image: hadolint, build (podman; about 10 min the first time, 2-3 min after a change), run"
deploy/container/build.sh
deploy/container/test.sh

step "Compose stack (deploy/compose/compose.yaml against the Compose Specification)"
deploy/compose/check.sh

step "Kubernetes (kustomize build of base and overlays, kubeconform -strict, Strimzi CRD schemas)"
deploy/k8s/validate.sh

step "Prometheus alerts and the Grafana dashboard (promtool; every queried metric in the scrapes of tests/metrics.rs)"
deploy/prometheus/check.sh
