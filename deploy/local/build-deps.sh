#!/usr/bin/env bash
# deploy/local/build-deps.sh — what building jointops needs besides Rust:
# rdkafka-sys builds librdkafka from source (cmake, a C/C++ compiler) against
# the system OpenSSL for TLS (libssl-dev, found through pkg-config).
# Installs whatever is missing with apt-get; says nothing when all is there.
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null || missing+=(g++)
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
((${#missing[@]} == 0)) && exit 0
echo "build-deps.sh: installing ${missing[*]} with apt-get" >&2
sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
