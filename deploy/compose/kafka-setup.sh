#!/bin/bash
# One shot, as the admin: the two topics (input retention infinite, contract
# §3's fixed partitions) and exactly the ACLs of contract §7 for the hub and
# each force in $FORCES.
set -euo pipefail
b=kafka:9093
auth=(--bootstrap-server "$b" --command-config /run/secrets/kafka_admin_properties)
topics() { /opt/kafka/bin/kafka-topics.sh "${auth[@]}" "$@"; }
acl() { /opt/kafka/bin/kafka-acls.sh "${auth[@]}" --add --force "$@" >/dev/null; }
topics --create --if-not-exists --topic jointops.outcomes --partitions 6 --replication-factor 1 \
    --config retention.ms=-1 --config retention.bytes=-1
topics --create --if-not-exists --topic jointops.outcomes.dlq --partitions 6 --replication-factor 1
forces=()
for f in $FORCES; do forces+=(--allow-principal "User:$f"); done
acl "${forces[@]}" --operation Write --topic jointops.outcomes
acl "${forces[@]}" --allow-principal User:hub --operation IdempotentWrite --cluster
acl --allow-principal User:hub --operation Read --topic jointops.outcomes --group jointops-rollup
acl --allow-principal User:hub --operation Write --topic jointops.outcomes.dlq
acl --allow-principal User:hub --operation Create --topic jointops.outcomes --topic jointops.outcomes.dlq
echo "topics and ACLs of contract §7 in place (hub; forces: $FORCES)"
