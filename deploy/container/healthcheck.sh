#!/bin/bash
# The image's HEALTHCHECK: GET one URL on the container's own loopback and
# succeed on a 2xx answer. The runtime image has no curl or wget, so this is
# HTTP/1.0 over bash's /dev/tcp (plain HTTP only: a `serve` with [api]
# tls_cert is checked on its metrics listener instead).
#   jointops-healthcheck [URL]   default $JOINTOPS_HEALTHCHECK_URL, else serve's /healthz
# serve: http://127.0.0.1:8080/healthz (or /readyz); rollup and agent watch:
# their [metrics] listen, e.g. http://127.0.0.1:9101/metrics.
set -u
url=${1:-${JOINTOPS_HEALTHCHECK_URL:-http://127.0.0.1:8080/healthz}}
[[ $url == none ]] && exit 0
rest=${url#http://}
[[ $rest != "$url" ]] || { echo "jointops-healthcheck: only http:// URLs: $url" >&2; exit 2; }
hostport=${rest%%/*}
path=/
[[ $rest == */* ]] && path=/${rest#*/}
host=${hostport%:*}
port=${hostport##*:}
[[ $port =~ ^[0-9]+$ && $host != "$hostport" ]] || { echo "jointops-healthcheck: no host:port in $url" >&2; exit 2; }
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
IFS= read -r -t 5 status <&3 || { echo "jointops-healthcheck: no answer from $url" >&2; exit 1; }
status=${status%$'\r'}
[[ $status =~ ^HTTP/1\.[01]\ 2[0-9][0-9] ]] && exit 0
echo "jointops-healthcheck: $url answered: $status" >&2
exit 1
