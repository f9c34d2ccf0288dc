#!/bin/bash
# The compose stack's broker (apache/kafka image): single-node KRaft with a
# SASL_SSL / SCRAM-SHA-512 listener for clients and the broker itself, the
# controller on its own listener, StandardAuthorizer with nothing allowed
# without an ACL (contract §7), super users broker and admin. Formats the
# storage once, with the SCRAM logins (deploy/compose/secrets.sh), then
# starts. Like deploy/local/kafka-secure.sh, in one container.
set -euo pipefail
s=/run/secrets
pass=$(<"$s/kafka_store_password")
conf=/tmp/server.properties
cat >"$conf" <<PROPS
process.roles=broker,controller
node.id=${KAFKA_NODE_ID:-1}
controller.quorum.voters=${KAFKA_NODE_ID:-1}@kafka:9094
listeners=SASL_SSL://:9093,CONTROLLER://:9094
advertised.listeners=SASL_SSL://kafka:9093
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
controller.listener.names=CONTROLLER
ssl.keystore.type=PKCS12
ssl.keystore.location=$s/kafka_keystore
ssl.keystore.password=$pass
ssl.key.password=$pass
ssl.truststore.type=PKCS12
ssl.truststore.location=$s/kafka_truststore
ssl.truststore.password=$pass
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(<"$s/kafka_broker_password")";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:admin;User:kafka
log.dirs=/var/lib/kafka/data
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
PROPS
if [[ ! -f /var/lib/kafka/data/meta.properties ]]; then
    scram=()
    while read -r line; do [[ -n $line ]] && scram+=(--add-scram "$line"); done <"$s/kafka_scram_users"
    /opt/kafka/bin/kafka-storage.sh format -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" -c "$conf" "${scram[@]}"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$conf"
