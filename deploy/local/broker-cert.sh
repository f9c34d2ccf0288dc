#!/usr/bin/env bash
# Makes a broker's TLS material in DIR: a new CA (ca.key, ca.pem), the
# broker's key and certificate signed by it (for server and client use: it
# is also the KRaft controller listener's client certificate), a PKCS12
# keystore (broker.p12, alias CN) and truststore (truststore.p12, the CA),
# both under the password in DIR/store.password. Used by the local secure
# broker (kafka-secure.sh) and by the compose stack (deploy/compose/secrets.sh).
# usage: deploy/local/broker-cert.sh DIR CA_NAME BROKER_CN SUBJECT_ALT_NAMES
#   e.g. broker-cert.sh deploy/local/secrets "jointops local CA" broker "IP:127.0.0.1,DNS:localhost"
set -euo pipefail
(($# == 4)) || { sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2; }
d=$1 ca_name=$2 cn=$3 san=$4
pass=$(<"$d/store.password")
openssl req -x509 -newkey rsa:2048 -sha256 -days 3650 -nodes -subj "/CN=$ca_name" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$d/broker.key" -out "$d/broker.csr" 2>/dev/null
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$san" >"$d/broker.ext"
openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 825 -sha256 -extfile "$d/broker.ext" -out "$d/broker.pem" 2>/dev/null
openssl pkcs12 -export -name "$cn" -in "$d/broker.pem" -inkey "$d/broker.key" -certfile "$d/ca.pem" \
    -out "$d/broker.p12" -passout "pass:$pass"
# keytool refuses to add the alias to a truststore that has it already.
rm -f "$d/truststore.p12" "$d/broker.csr" "$d/broker.ext"
keytool -importcert -noprompt -alias ca -file "$d/ca.pem" -keystore "$d/truststore.p12" \
    -storetype PKCS12 -storepass "$pass" >/dev/null 2>&1 \
    || { echo "broker-cert.sh: keytool could not make the truststore" >&2; exit 1; }
