# deploy/local/kafka-secure.sh — the KAFKA_SECURITY=sasl_ssl half of
# kafka.sh, sourced by it (not run on its own): the local CA and the broker's
# certificate, the SCRAM principals, their ACLs (contract §7) and the client
# properties files. Everything secret lives in $SECRETS (git-ignored, 0700,
# files 0600) and is made once, at first start; later starts reuse it.
#
# Listeners, all TLS:
#   SASL_SSL://127.0.0.1:$KAFKA_PORT        clients and the broker itself, SCRAM-SHA-512
#   CONTROLLER://127.0.0.1:$CONTROLLER_PORT KRaft controller, mutual TLS (the broker's certificate)
#
# Principals: broker and admin (the only super users), hub, one per force.

SECRETS=${KAFKA_SECRETS:-$HERE/secrets}
KAFKA_FORCES=${KAFKA_FORCES:-MPS KENT ESSEX SUSSEX HERTS TVP BTP}
KAFKA_TOPIC=${KAFKA_TOPIC:-jointops.outcomes}
KAFKA_DLQ_TOPIC=${KAFKA_DLQ_TOPIC:-jointops.outcomes.dlq}
KAFKA_HUB_GROUP=${KAFKA_HUB_GROUP:-jointops-rollup}
# The Kafka tools' own client settings for the admin (Java client names:
# JAAS, truststore), for `tool ... --command-config`; not a librdkafka file.
ADMIN_TOOLS_PROPS=$SECRETS/admin.java.properties
SCRAM=SCRAM-SHA-512

for f in $KAFKA_FORCES; do
  # Forces are principals and file names: keep them to the contract's force codes.
  [[ $f =~ ^[A-Z0-9]{2,12}$ ]] || die "KAFKA_FORCES: '$f' is not a force code ([A-Z0-9]{2,12})"
done
for t in "$KAFKA_TOPIC" "$KAFKA_DLQ_TOPIC" "$KAFKA_HUB_GROUP"; do
  [[ $t =~ ^[A-Za-z0-9._-]+$ ]] || die "topic or group name '$t' is not [A-Za-z0-9._-]+"
done

principals() { echo admin hub $KAFKA_FORCES; }

ensure_openssl() {
  command -v openssl >/dev/null 2>&1 || apt_install openssl
}

# A random password, hex so that it needs no quoting in JAAS, properties or
# the tools' [name=…,password=…] syntax.
new_password() { openssl rand -hex 24; }

prop_get() { # FILE KEY: the value of KEY=value in a properties file, if any
  [[ -f $1 ]] || return 0
  sed -n "s/^$2=//p" "$1" | tail -1
}

# The principal's password: the one in its properties file, else a new one.
password_of() {
  local p
  if [[ $1 == broker ]]; then
    [[ -s $SECRETS/broker.password ]] || new_password >"$SECRETS/broker.password"
    p=$(<"$SECRETS/broker.password")
  else
    p=$(prop_get "$SECRETS/$1.properties" sasl.password)
    [[ -n $p ]] || p=$(new_password)
  fi
  echo "$p"
}

# The CA, the broker's key and certificate (CN=broker, for 127.0.0.1 and
# localhost, server and client use: it is also the controller listener's
# client certificate), a PKCS12 keystore and truststore for the JVM.
make_certs() {
  [[ -f $SECRETS/ca.pem && -f $SECRETS/broker.p12 && -f $SECRETS/truststore.p12 && -s $SECRETS/store.password ]] \
    && return 0
  command -v keytool >/dev/null 2>&1 || die "keytool (from the JDK) is missing"
  say "making a local CA and the broker's certificate in $SECRETS"
  local d=$SECRETS
  rm -f "$d"/ca.* "$d"/broker.* "$d"/truststore.p12
  new_password >"$d/store.password"
  "$HERE/broker-cert.sh" "$d" "jointops local CA" broker "IP:$HOST,DNS:localhost" \
    || die "could not make the broker's certificates in $d"
}

# First start: the secrets folder, certificates and every principal's
# password (kept in its properties file, rewritten on every start).
make_secrets() {
  ensure_openssl
  (umask 077 && mkdir -p "$SECRETS")
  chmod 700 "$SECRETS"
  umask 077
  if [[ ! -s $SECRETS/store.password && -f $LOG_DIRS/meta.properties ]]; then
    die "$DATA was formatted with the secrets that were in $SECRETS, now gone; remove $DATA to start afresh"
  fi
  make_certs
  local p
  for p in $(principals); do write_client_props "$p" "$(password_of "$p")"; done
  write_admin_tools_props
  password_of broker >/dev/null
}

# A librdkafka properties file for one principal: `kcat -F`, any librdkafka
# client, or `kafka.properties` in a jointops config. Paths are absolute
# because librdkafka resolves them against the client's working folder.
write_client_props() { # PRINCIPAL PASSWORD
  local f=$SECRETS/$1.properties
  cat >"$f.tmp" <<EOF
# Principal $1 on the local secure broker (deploy/local/kafka.sh, KAFKA_SECURITY=sasl_ssl).
bootstrap.servers=$HOST:$KAFKA_PORT
security.protocol=SASL_SSL
sasl.mechanism=$SCRAM
sasl.username=$1
sasl.password=$2
ssl.ca.location=$SECRETS/ca.pem
EOF
  chmod 600 "$f.tmp"
  mv "$f.tmp" "$f"
}

write_admin_tools_props() {
  cat >"$ADMIN_TOOLS_PROPS.tmp" <<EOF
# The admin, for the Kafka tools: deploy/local/kafka.sh tool CLASS --command-config $ADMIN_TOOLS_PROPS
security.protocol=SASL_SSL
sasl.mechanism=$SCRAM
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password_of admin)";
ssl.truststore.type=PKCS12
ssl.truststore.location=$SECRETS/truststore.p12
ssl.truststore.password=$(<"$SECRETS/store.password")
EOF
  chmod 600 "$ADMIN_TOOLS_PROPS.tmp"
  mv "$ADMIN_TOOLS_PROPS.tmp" "$ADMIN_TOOLS_PROPS"
}

# server.properties' listeners and security (it holds the store and broker
# passwords: kafka.sh writes it under umask 077 in this mode).
secure_listener_props() {
  local pass
  pass=$(<"$SECRETS/store.password")
  cat <<EOF
listeners=SASL_SSL://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$HOST:$KAFKA_PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
controller.listener.names=CONTROLLER

# TLS everywhere: one broker certificate; the controller listener also wants
# the client's (mutual TLS), and the broker presents the same one.
ssl.keystore.type=PKCS12
ssl.keystore.location=$SECRETS/broker.p12
ssl.keystore.password=$pass
ssl.key.password=$pass
ssl.truststore.type=PKCS12
ssl.truststore.location=$SECRETS/truststore.p12
ssl.truststore.password=$pass
listener.name.controller.ssl.client.auth=required
# CN=broker is User:broker, the same principal as its SCRAM login.
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT

# Clients and the broker's own inter-broker connections: SCRAM-SHA-512.
sasl.enabled.mechanisms=$SCRAM
sasl.mechanism.inter.broker.protocol=$SCRAM
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(password_of broker)";

# Nothing without an ACL, but for the broker and the admin.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:broker;User:admin
EOF
}

# What $DATA/scram-users records of a login the broker has: the principal
# and a digest of its password, so that a new password (its properties
# file removed) is set again.
scram_mark() { echo "$1 $(password_of "$1" | sha256sum | cut -c1-16)"; }

# KRaft takes SCRAM credentials at format time; the broker and the admin
# must be there before the broker can start or be administered. The
# passwords pass on a local command line: this is a machine-local broker.
secure_format_args() {
  local p
  for p in broker $(principals); do
    printf '%s\n' --add-scram "$SCRAM=[name=$p,password=$(password_of "$p")]"
  done
}

# TLS, then the Kafka probe inside it: ApiVersions is answered before SASL
# authentication, and only once the broker is ready (see probe in kafka.sh).
probe_tls() {
  timeout 5 bash -c '
    got=$(mktemp) && trap "rm -f $got" EXIT
    # stdin stays open until the answer is in (or 4 s): s_client stops at its end.
    { printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x6a\x6f\x69\x6e\xff\xff"
      for _ in $(seq 40); do [[ -s $got ]] && break; sleep 0.1; done; } \
      | openssl s_client -connect "$0:$1" -CAfile "$2" -verify_return_error -verify_ip "$0" -quiet -no_ign_eof 2>/dev/null \
      | head -c 10 >"$got"
    [[ $(od -An -tx1 <"$got" | tr -d " \n") == ????????6a6f696e0000 ]]
  ' "$HOST" "${1:-$KAFKA_PORT}" "$SECRETS/ca.pem" 2>/dev/null
}

admin_tool() { # CLASS ARGS...: a Kafka tool as the admin
  run_tool "$1" --bootstrap-server "$HOST:$KAFKA_PORT" --command-config "$ADMIN_TOOLS_PROPS" "${@:2}"
}

# Once the broker answers: SCRAM logins for principals added since the
# format, the topics, and the ACLs of contract §7. Each part remembers what
# it applied (in $DATA), so an unchanged restart costs no tool runs.
secure_setup() {
  local have=$DATA/scram-users p
  touch "$have"
  for p in $(principals); do
    grep -qxF "$(scram_mark "$p")" "$have" && continue
    say "setting the SCRAM login of $p"
    admin_tool org.apache.kafka.tools.ConfigCommand --alter --entity-type users --entity-name "$p" \
      --add-config "$SCRAM=[password=$(password_of "$p")]" >/dev/null \
      || die "could not set the SCRAM login of $p"
    scram_mark "$p" >>"$have"
  done

  local want applied=$DATA/acls-applied
  want="forces=$KAFKA_FORCES topic=$KAFKA_TOPIC dlq=$KAFKA_DLQ_TOPIC group=$KAFKA_HUB_GROUP"
  [[ -f $applied && $(<"$applied") == "$want" ]] && return 0
  if [[ -f $applied ]]; then forget_previous "$(<"$applied")"; fi
  say "creating $KAFKA_TOPIC, $KAFKA_DLQ_TOPIC and the ACLs of $(principals | wc -w) principals"
  for p in "$KAFKA_TOPIC" "$KAFKA_DLQ_TOPIC"; do
    admin_tool org.apache.kafka.tools.TopicCommand --create --if-not-exists --topic "$p" \
      --partitions "$KAFKA_PARTITIONS" --replication-factor 1 >/dev/null
  done
  local forces=() hub=(--allow-principal User:hub)
  for p in $KAFKA_FORCES; do forces+=(--allow-principal "User:$p"); done
  acl() { admin_tool org.apache.kafka.tools.AclCommand --add --force "$@" >/dev/null || die "AclCommand $* failed"; }
  # Forces: write the input topic, nothing else (IdempotentWrite is a
  # cluster operation; the agent's producer is idempotent).
  acl "${forces[@]}" --operation Write --topic "$KAFKA_TOPIC"
  acl "${forces[@]}" "${hub[@]}" --operation IdempotentWrite --cluster
  # The hub: read the input topic in its group, write dead letters, and
  # create the two topics when they are missing (the rollup does at start).
  acl "${hub[@]}" --operation Read --topic "$KAFKA_TOPIC" --group "$KAFKA_HUB_GROUP"
  acl "${hub[@]}" --operation Write --topic "$KAFKA_DLQ_TOPIC"
  acl "${hub[@]}" --operation Create --topic "$KAFKA_TOPIC" --topic "$KAFKA_DLQ_TOPIC"
  echo "$want" >"$applied"
}

# The ACLs are to be exactly contract §7's for this start's names: those of
# the last start go (a force no longer listed also loses its login and
# properties file), and secure_setup adds the current ones.
forget_previous() { # the acls-applied line of the last start
  local old=$1 p forces resources=(--cluster)
  forces=$(sed -n 's/^forces=\(.*\) topic=.*/\1/p' <<<"$old")
  for p in topic dlq group; do
    local name
    name=$(grep -o "$p=[^ ]*" <<<"$old" | cut -d= -f2)
    [[ -n $name ]] || continue
    if [[ $p == group ]]; then resources+=(--group "$name"); else resources+=(--topic "$name"); fi
  done
  admin_tool org.apache.kafka.tools.AclCommand --remove --force "${resources[@]}" >/dev/null \
    || die "could not remove the ACLs of the last start"
  for p in $forces; do
    [[ " $KAFKA_FORCES " == *" $p "* ]] && continue
    say "removing $p, no longer in KAFKA_FORCES"
    admin_tool org.apache.kafka.tools.ConfigCommand --alter --entity-type users --entity-name "$p" \
      --delete-config "$SCRAM" >/dev/null || die "could not remove the SCRAM login of $p"
    sed -i "/^$p /d" "$DATA/scram-users"
    rm -f "$SECRETS/$p.properties"
  done
}

secure_report() {
  say "secure broker: SASL_SSL on $HOST:$KAFKA_PORT; client properties in $SECRETS/{$(principals | tr ' ' ,)}.properties"
}
