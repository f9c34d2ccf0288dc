#!/usr/bin/env bash
# Makes the compose stack's secrets once, in deploy/compose/secrets/
# (git-ignored): a CA and the broker's certificate (PKCS12 keystore and
# truststore), a random SCRAM-SHA-512 password per principal (broker, admin,
# hub, each force), each client's librdkafka properties, the JAAS line and
# admin properties the broker's one-shot ACL service uses, each force's
# Ed25519 signing key (`jointops keys generate`, with the image) and the
# operation's shared pseudonymisation secret. Keeps what exists.
#   deploy/compose/secrets.sh [IMAGE]
# The jointops containers run as UID 10001 and jointops refuses a
# credentials file that others may read, so their files are 0600 and owned
# by 10001 (rootful podman or Docker; rootless podman maps UIDs: see README).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
d="$here/secrets"
image="${1:-$(cat "$repo/target/container/image" 2>/dev/null || echo localhost/jointops:dev)}"
forces="${COMPOSE_FORCES:-MPS KENT}"
umask 077
mkdir -p "$d"
command -v openssl >/dev/null || { echo "secrets.sh: openssl is missing" >&2; exit 1; }
command -v keytool >/dev/null || { echo "secrets.sh: keytool (a JDK) is missing" >&2; exit 1; }
pw() { openssl rand -hex 24; }
keep() { [[ -s $d/$1 ]] || pw >"$d/$1"; }

if [[ ! -s $d/broker.p12 ]]; then
    keep store.password
    "$repo/deploy/local/broker-cert.sh" "$d" "jointops compose CA" kafka "DNS:kafka,DNS:localhost,IP:127.0.0.1"
    rm -f "$d/broker.key" "$d/broker.pem" "$d/ca.key"
fi
for p in broker admin hub $forces; do keep "$p.password"; done
pass=$(<"$d/store.password")
# The broker's SCRAM logins, given to `kafka-storage format --add-scram` at
# first start, and its own JAAS line.
{
    for p in broker admin hub $forces; do
        printf 'SCRAM-SHA-512=[name=%s,password=%s]\n' "$p" "$(<"$d/$p.password")"
    done
} >"$d/scram-users"
cat >"$d/admin.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(<"$d/admin.password")";
ssl.truststore.type=PKCS12
ssl.truststore.location=/run/secrets/kafka_truststore
ssl.truststore.password=$pass
PROPS
for p in hub $forces; do
    cat >"$d/$p.properties" <<PROPS
bootstrap.servers=kafka:9093
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.username=$p
sasl.password=$(<"$d/$p.password")
ssl.ca.location=/run/secrets/kafka_ca
PROPS
done
keep operation.secret
# Each force's signing key, and the hub's [[trust.keys]] for them.
if [[ ! -s $d/trust-keys.toml ]]; then
    command -v podman >/dev/null || { echo "secrets.sh: podman is missing (the keys are made with the image)" >&2; exit 1; }
    : >"$d/trust-keys.toml.tmp"
    for f in $forces; do
        rm -f "$d/$f.key"
        podman run --rm --network none -v "$d:/out" --user 0 "$image" \
            keys generate --force "$f" --id "$f-COMPOSE-1" --out "/out/$f.key" >>"$d/trust-keys.toml.tmp" 2>/dev/null
    done
    mv "$d/trust-keys.toml.tmp" "$d/trust-keys.toml"
fi
# The hub's config: ours with the forces' public keys.
cat "$here/config/hub.toml" "$d/trust-keys.toml" >"$d/hub.toml"
chmod 0600 "$d"/*
# The jointops containers' user owns what they read; the broker (the
# apache/kafka image's appuser, UID 1000) its keystore and logins.
chown 10001:10001 "$d"/hub.properties "$d"/operation.secret
for f in $forces; do chown 10001:10001 "$d/$f.properties" "$d/$f.key"; done
chown 1000:1000 "$d"/broker.p12 "$d"/truststore.p12 "$d"/store.password "$d"/scram-users "$d"/admin.properties "$d"/broker.password
chmod 0644 "$d/ca.pem" "$d/trust-keys.toml" "$d/hub.toml"
echo "secrets in $d (forces: $forces)"
