#!/usr/bin/env bash
# deploy/local/kafka.sh — a real, single-node Apache Kafka broker on this
# machine, without Docker. The broker jars come from Maven Central through
# Maven (deploy/local/kafka/pom.xml); nothing else is downloaded.
#
#   deploy/local/kafka.sh start              fetch (once), format (once), start, wait until it answers
#   deploy/local/kafka.sh stop               SIGTERM, wait up to KAFKA_STOP_TIMEOUT s, then SIGKILL
#   deploy/local/kafka.sh status             exit 0 "running on 127.0.0.1:PORT (pid N)", else exit 1 "not running"
#   deploy/local/kafka.sh restart            stop, then start
#   deploy/local/kafka.sh topics NAME...     create each topic if missing (KAFKA_PARTITIONS partitions, RF 1)
#   deploy/local/kafka.sh tool CLASS ARGS... run any Kafka tool class on the broker's classpath, e.g.
#       deploy/local/kafka.sh tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:9092 --topic x
#       deploy/local/kafka.sh tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server 127.0.0.1:9092 --topic x --from-beginning
#       deploy/local/kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --describe
#
# Environment (all optional):
#   KAFKA_SECURITY         plaintext, or sasl_ssl: a second, secure broker  [plaintext]
#                          (TLS on every listener, SCRAM-SHA-512 clients, mutual-TLS controller,
#                          ACLs; no plaintext listener; see kafka-secure.sh). Its own settings:
#     KAFKA_SASL_PORT            SASL_SSL client port on 127.0.0.1         [9093]
#     KAFKA_SASL_CONTROLLER_PORT controller (mutual TLS) port               [KAFKA_SASL_PORT+1000]
#     KAFKA_SASL_DATA            data folder                   [<repo>/.cache/kafka-data-sasl-$KAFKA_SASL_PORT]
#     KAFKA_SECRETS              CA, certificates, passwords and one librdkafka file per
#                                principal, <principal>.properties        [deploy/local/secrets]
#     KAFKA_FORCES               forces given a principal       [MPS KENT ESSEX SUSSEX HERTS TVP BTP]
#     KAFKA_TOPIC, KAFKA_DLQ_TOPIC, KAFKA_HUB_GROUP   what the ACLs name
#                                [jointops.outcomes, jointops.outcomes.dlq, jointops-rollup]
#     The Kafka tools log in as the admin with --command-config $KAFKA_SECRETS/admin.java.properties.
#   KAFKA_PORT             client (PLAINTEXT) port on 127.0.0.1            [9092]
#   KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1              [KAFKA_PORT+1000]
#   KAFKA_PARTITIONS       num.partitions, and partitions for `topics`     [6]
#   KAFKA_DATA             data folder: server.properties, kraft-logs/, server.log, kafka.out, kafka.pid
#                                                                          [<repo>/.cache/kafka-data-$KAFKA_PORT]
#   JOINTOPS_CACHE         where the jars go: $JOINTOPS_CACHE/kafka-<version>/libs   [<repo>/.cache]
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer        [90]
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL    [30]
#   KAFKA_HEAP_OPTS        broker heap                                     [-Xms256m -Xmx1g]
#   KAFKA_JVM_OPTS         extra broker JVM options                        []
#   KAFKA_TOOL_OPTS        JVM options for `topics`/`tool`                 [small heap, C1 only: starts fast]
#   KAFKA_MVN_ARGS         extra arguments for the Maven fetch, e.g. -Dmaven.repo.local=/some/dir
#   JAVA_HOME              java to use (17 or newer)                       [java on PATH]
#
# Several brokers can run side by side: give each its own KAFKA_PORT (the data
# folder and controller port follow from it unless set).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONF_DIR=$HERE/kafka

# Pinned broker version; must match <kafka.version> in kafka/pom.xml (passed to
# Maven explicitly, so the pom's default is only used when run by hand).
KAFKA_VERSION=4.4.0

HOST=127.0.0.1
KAFKA_SECURITY=${KAFKA_SECURITY:-plaintext}
case $KAFKA_SECURITY in
  plaintext) ;;
  sasl_ssl)
    # Its own ports and data folder, so that it runs beside a plaintext broker.
    KAFKA_PORT=${KAFKA_SASL_PORT:-9093}
    KAFKA_CONTROLLER_PORT=${KAFKA_SASL_CONTROLLER_PORT:-$((KAFKA_PORT + 1000))}
    KAFKA_DATA=${KAFKA_SASL_DATA:-$ROOT/.cache/kafka-data-sasl-$KAFKA_PORT}
    ;;
  *) echo "kafka.sh: KAFKA_SECURITY must be plaintext or sasl_ssl, got '$KAFKA_SECURITY'" >&2; exit 2 ;;
esac
secure() { [[ $KAFKA_SECURITY == sasl_ssl ]]; }
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1000))}
KAFKA_PARTITIONS=${KAFKA_PARTITIONS:-6}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:-}
KAFKA_TOOL_OPTS=${KAFKA_TOOL_OPTS:--Xms32m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto}
KAFKA_MVN_ARGS=${KAFKA_MVN_ARGS:-}

CACHE=${JOINTOPS_CACHE:-$ROOT/.cache}
KAFKA_HOME=$CACHE/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
LIBS_MARKER=$KAFKA_HOME/libs.complete

DATA=${KAFKA_DATA:-$ROOT/.cache/kafka-data-$KAFKA_PORT}
PROPS=$DATA/server.properties
LOG_DIRS=$DATA/kraft-logs
PIDFILE=$DATA/kafka.pid
SERVER_LOG=$DATA/server.log   # log4j2 (see kafka/log4j2.xml)
OUT_LOG=$DATA/kafka.out       # the JVM's own stdout/stderr (crashes, bad options)
FORMATTED_BY=$DATA/formatted-by-kafka-version

JAVA=java
[[ -n ${JAVA_HOME:-} && -x ${JAVA_HOME:-}/bin/java ]] && JAVA=$JAVA_HOME/bin/java

say() { echo "kafka.sh: $*"; }
err() { echo "kafka.sh: $*" >&2; }
die() { err "$@"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

for v in KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_PARTITIONS KAFKA_START_TIMEOUT KAFKA_STOP_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
[[ $KAFKA_PORT != "$KAFKA_CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"

# ---------------------------------------------------------------- tooling ---

apt_install() {
  local sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  err "installing $* with apt-get"
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >&2
}

ensure_java() {
  if ! command -v "$JAVA" >/dev/null 2>&1; then
    apt_install openjdk-17-jre-headless
    JAVA=java
  fi
  local ver major
  ver=$("$JAVA" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
  major=${ver%%.*}
  [[ $major == 1 ]] && major=$(cut -d. -f2 <<<"$ver")
  [[ $major =~ ^[0-9]+$ && $major -ge 17 ]] \
    || die "Kafka $KAFKA_VERSION needs Java 17 or newer; $JAVA is '$ver' (set JAVA_HOME)"
}

ensure_mvn() {
  command -v mvn >/dev/null 2>&1 || apt_install maven
}

# Copy the broker, the tools and log4j2 (runtime scope) into $LIBS, once.
# libs.complete records the version and the pom's hash, so editing the pom
# triggers a fresh copy. A lock keeps parallel starts from fetching twice.
fetch() {
  local want
  want="$KAFKA_VERSION $(sha256sum "$CONF_DIR/pom.xml" | cut -d' ' -f1)"
  [[ -f $LIBS_MARKER && $(<"$LIBS_MARKER") == "$want" ]] && return 0
  mkdir -p "$KAFKA_HOME"
  exec 9>"$KAFKA_HOME/.fetch.lock"
  command -v flock >/dev/null 2>&1 && flock 9
  if [[ -f $LIBS_MARKER && $(<"$LIBS_MARKER") == "$want" ]]; then exec 9>&-; return 0; fi
  ensure_mvn
  err "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS"
  local t0=$SECONDS
  rm -rf "$LIBS.tmp"
  # shellcheck disable=SC2086  # KAFKA_MVN_ARGS is a list of words on purpose
  if ! mvn -q -B -Dstyle.color=never -f "$CONF_DIR/pom.xml" $KAFKA_MVN_ARGS \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$LIBS.tmp" >"$KAFKA_HOME/fetch.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$KAFKA_HOME/fetch.log" | tail -n 40 >&2
    rm -rf "$LIBS.tmp"
    die "Maven could not fetch Kafka $KAFKA_VERSION (see above; full log $KAFKA_HOME/fetch.log)"
  fi
  local jar
  for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar"; do
    [[ -f $LIBS.tmp/$jar ]] || die "fetch incomplete: $jar missing in $LIBS.tmp"
  done
  rm -rf "$LIBS"
  mv "$LIBS.tmp" "$LIBS"
  echo "$want" >"$LIBS_MARKER"
  err "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0)) s"
  exec 9>&-
}

# Run a Kafka tool class with the broker's classpath; logs WARN+ to stderr.
run_tool() {
  # shellcheck disable=SC2086  # KAFKA_TOOL_OPTS is a list of words on purpose
  "$JAVA" $KAFKA_TOOL_OPTS -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.xml" \
    -cp "$LIBS/*" "$@"
}

# shellcheck source=deploy/local/kafka-secure.sh
if secure; then source "$HERE/kafka-secure.sh"; fi

# ------------------------------------------------------------- the broker ---

# A real Kafka answer, in pure bash (no JVM): send ApiVersions v0 and check
# the response carries our correlation id and error code 0. A KRaft broker
# only enables request processing once it is unfenced, so this means ready.
probe() {
  if secure; then probe_tls "$@"; return; fi
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    # size=10 | api_key=18 (ApiVersions) | api_version=0 | correlation_id="join" | client_id=null
    printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x6a\x6f\x69\x6e\xff\xff" >&3
    hdr=$(head -c 10 <&3 | od -An -tx1 | tr -d " \n")
    [[ $hdr == ????????6a6f696e0000 ]]
  ' "$HOST" "${1:-$KAFKA_PORT}" 2>/dev/null
}

port_taken() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

alive() { # running and not a zombie
  local state=
  [[ -r /proc/$1/stat ]] || return 1
  read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [[ -n $state && $state != Z ]]
}

is_our_broker() { # pid runs kafka.Kafka on *this* data folder's server.properties
  alive "$1" || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- " kafka.Kafka $PROPS"
}

# Our broker's pid: from the pid file, else (pid file lost) by looking for the
# exact "kafka.Kafka <this data folder>/server.properties" command line.
broker_pid() {
  local p
  if [[ -f $PIDFILE ]]; then
    p=$(<"$PIDFILE")
    if [[ $p =~ ^[0-9]+$ ]] && is_our_broker "$p"; then echo "$p"; return 0; fi
  fi
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" ]] && continue
    if is_our_broker "$p"; then echo "$p" >"$PIDFILE"; echo "$p"; return 0; fi
  done
  return 1
}

plaintext_listener_props() {
  cat <<EOF
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
EOF
}

write_props() {
  local listeners
  if secure; then listeners=$(secure_listener_props); else listeners=$(plaintext_listener_props); fi
  cat >"$PROPS.tmp" <<EOF
# Generated by deploy/local/kafka.sh — rewritten on every start; edit the script instead.
# Single-node KRaft, combined mode (this process is both broker and controller).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
$listeners
log.dirs=$LOG_DIRS

# Topics
num.partitions=$KAFKA_PARTITIONS
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true

# Internal topics: one replica, few partitions (fast first use on one node)
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=6

# Quick, small single node
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  mv "$PROPS.tmp" "$PROPS"
}

# Format the KRaft storage once (what bin/kafka-storage.sh format does).
format_storage() {
  if [[ -f $LOG_DIRS/meta.properties ]]; then
    local by
    by=$(cat "$FORMATTED_BY" 2>/dev/null || echo unknown)
    if [[ $by != unknown && $by != "$KAFKA_VERSION" ]] \
       && [[ $(printf '%s\n%s\n' "$by" "$KAFKA_VERSION" | sort -V | tail -1) == "$by" ]]; then
      die "$LOG_DIRS was formatted by Kafka $by, newer than $KAFKA_VERSION; remove $DATA to start afresh"
    fi
    return 0
  fi
  local cid
  cid=$(run_tool kafka.tools.StorageTool random-uuid | tail -1)
  [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "StorageTool random-uuid gave '$cid'"
  say "formatting $LOG_DIRS (cluster id $cid)"
  local extra=() p
  if secure; then mapfile -t extra < <(secure_format_args); fi
  run_tool kafka.tools.StorageTool format -t "$cid" -c "$PROPS" "${extra[@]}" >>"$OUT_LOG" 2>&1 \
    || { tail -20 "$OUT_LOG" >&2; die "formatting the KRaft storage failed"; }
  if secure; then for p in $(principals); do scram_mark "$p"; done >"$DATA/scram-users"; fi
  echo "$KAFKA_VERSION" >"$FORMATTED_BY"
}

show_logs() {
  if [[ -s $SERVER_LOG ]]; then
    err "last 40 lines of $SERVER_LOG:"
    tail -n 40 "$SERVER_LOG" >&2
  fi
  local out
  out=$(awk '/^=== .* starting Kafka /{buf=""; next} {buf=buf $0 "\n"} END{printf "%s", buf}' "$OUT_LOG" 2>/dev/null | tail -n 20)
  if [[ -n $out ]]; then
    err "JVM output since this start ($OUT_LOG):"
    printf '%s\n' "$out" >&2
  fi
}

wait_ready() {
  local pid=$1 t0=$SECONDS deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while :; do
    if probe; then
      say "running on $HOST:$KAFKA_PORT (pid $pid; ready after $((SECONDS - t0)) s; data $DATA)"
      return 0
    fi
    if ! alive "$pid"; then
      rm -f "$PIDFILE"
      err "the broker (pid $pid) exited during start-up"
      show_logs
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      err "the broker (pid $pid) did not answer on $HOST:$KAFKA_PORT within $KAFKA_START_TIMEOUT s;" \
          "it is left running (deploy/local/kafka.sh stop ends it)"
      show_logs
      exit 1
    fi
    sleep 0.5
  done
}

lock_data() { # serialise start/stop on one data folder
  mkdir -p "$DATA"
  exec 8>"$DATA/.kafka.sh.lock"
  command -v flock >/dev/null 2>&1 && flock 8
  return 0
}

cmd_start() {
  ensure_java
  lock_data
  local pid
  if pid=$(broker_pid); then
    if secure; then make_secrets; fi
    if probe; then
      say "already running on $HOST:$KAFKA_PORT (pid $pid; data $DATA)"
    else
      say "pid $pid is up but not answering yet; waiting"
      wait_ready "$pid"
    fi
    if secure; then secure_setup; secure_report; fi
    return 0
  fi
  rm -f "$PIDFILE"
  fetch
  port_taken "$KAFKA_PORT" && die "$HOST:$KAFKA_PORT is taken by another process (not a broker on $DATA)"
  port_taken "$KAFKA_CONTROLLER_PORT" && die "$HOST:$KAFKA_CONTROLLER_PORT (controller) is taken by another process"

  if secure; then make_secrets; fi
  write_props
  format_storage
  echo "=== $(date -Is) starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT" >>"$OUT_LOG"
  # nohup+setsid: own session, immune to the caller's hang-up; fds 8/9 (locks)
  # are closed so the broker does not hold them. The java pid is $! because
  # setsid only forks when it is a process-group leader, which it is not here.
  # shellcheck disable=SC2086  # option lists are lists of words on purpose
  nohup setsid "$JAVA" $KAFKA_HEAP_OPTS \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true \
    -XX:ErrorFile="$DATA/hs_err_pid%p.log" \
    $KAFKA_JVM_OPTS \
    -Dkafka.logs.dir="$DATA" \
    -Dlog4j2.configurationFile="$CONF_DIR/log4j2.xml" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$OUT_LOG" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$PIDFILE"
  say "started pid $pid (Kafka $KAFKA_VERSION, log $SERVER_LOG); waiting up to $KAFKA_START_TIMEOUT s"
  wait_ready "$pid"
  if secure; then secure_setup; secure_report; fi
}

cmd_stop() {
  lock_data
  local pid t0=$SECONDS
  if ! pid=$(broker_pid); then
    rm -f "$PIDFILE"
    say "not running (port $KAFKA_PORT, data $DATA)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if alive "$pid"; then
    err "pid $pid still up after $KAFKA_STOP_TIMEOUT s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    alive "$pid" && die "pid $pid survived SIGKILL"
  fi
  rm -f "$PIDFILE"
  say "stopped (pid $pid, port $KAFKA_PORT) in $((SECONDS - t0)) s"
}

cmd_status() {
  local pid
  if pid=$(broker_pid); then
    if probe; then
      echo "running on $HOST:$KAFKA_PORT (pid $pid)"
      return 0
    fi
    echo "not running (pid $pid is up but $HOST:$KAFKA_PORT does not answer yet)"
    return 1
  fi
  if probe; then
    echo "not running (no broker on $DATA; another Kafka answers on $HOST:$KAFKA_PORT)"
  else
    echo "not running"
  fi
  return 1
}

cmd_topics() {
  (($# > 0)) || usage
  ensure_java
  fetch
  broker_pid >/dev/null && probe \
    || die "no broker answers on $HOST:$KAFKA_PORT (run deploy/local/kafka.sh start first)"
  local t auth=()
  if secure; then auth=(--command-config "$ADMIN_TOOLS_PROPS"); fi
  for t in "$@"; do
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" "${auth[@]}" \
      --create --if-not-exists --topic "$t" \
      --partitions "$KAFKA_PARTITIONS" --replication-factor 1
  done
  say "topics ready on $HOST:$KAFKA_PORT: $*"
}

cmd_tool() {
  (($# > 0)) || usage
  ensure_java
  fetch
  # shellcheck disable=SC2086
  exec "$JAVA" $KAFKA_TOOL_OPTS -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.xml" \
    -cp "$LIBS/*" "$@"
}

cmd=${1:-}
(($# > 0)) && shift
case $cmd in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  topics) cmd_topics "$@" ;;
  tool) cmd_tool "$@" ;;
  -h|--help|help|'') usage ;;
  *) err "unknown command '$cmd'"; usage ;;
esac
