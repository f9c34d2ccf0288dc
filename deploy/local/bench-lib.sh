# Helpers for deploy/local/bench.sh (sourced, not run). They use the
# caller's $bin, $cfg, $work and $JOINTOPS__KAFKA__BOOTSTRAP.
# shellcheck shell=bash
# It reads the caller's variables and sets some for it (done_ns, poll_ms,
# run_ms, run_rss_kb), which shellcheck cannot see from here.
# shellcheck disable=SC2034,SC2154

die() { echo "bench: $*" >&2; exit 1; }

# Milliseconds since a `date +%s%N` stamp (to END, or to now).
ms_since() { # START_NS [END_NS]
  echo $(( (${2:-$(date +%s%N)} - $1) / 1000000 ))
}

# events/s from a count and milliseconds (integers; 0 ms is reported as 1).
rate() { # COUNT MS
  echo $(( $1 * 1000 / ($2 > 0 ? $2 : 1) ))
}

# A rate as a fraction of the raw drain's ("0.081"): three decimals, as the
# rollup's is a few hundredths.
ratio() { # RATE RAW_RATE
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'
}

# Installs a Debian package for a missing command (we run as root); the
# package lists may be stale or absent on a fresh machine, so update once
# if the first attempt fails.
need() { # COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  echo "bench: installing $2 for $1" >&2
  apt-get install -y -q "$2" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null 2>&1; } ||
    die "cannot install $2 (apt-get install -y $2) for $1"
  command -v "$1" >/dev/null || die "$2 installed but $1 not found"
}

# An RFC 3339 UTC time with milliseconds from epoch milliseconds.
rfc3339_ms() { # EPOCH_MS
  date -u -d "@$(( $1 / 1000 )).$(printf %03d $(( $1 % 1000 )))" +%Y-%m-%dT%H:%M:%S.%3NZ
}

# Reports in a store (the rollup may be writing it: WAL lets us read).
store_reports() { # STORE
  sqlite3 -readonly "$1" 'SELECT COUNT(*) FROM reports' || die "cannot count the reports in $1"
}

# One look at the store's lag, without --wait: exit 0 iff the store at STORE
# has counted (or dead-lettered) everything on the topic so far.
lag_is_zero() { # STORE
  JOINTOPS__STORE__PATH="$1" "$bin" lag --config "$cfg" >"$work/lag.out" 2>&1
}

# The sum of the topic's partition ends now, from one `lag` look (exit 1
# while behind is expected here).
topic_end() {
  local out
  out=$("$bin" lag --config "$cfg" 2>&1) || true
  grep -q '^total lag' <<<"$out" || die "jointops lag failed: $out"
  awk '/: end / { sub(",", "", $3); s += $3 } END { print s + 0 }' <<<"$out"
}

# Whether the store at STORE has counted up to END (the sum of the topic's
# ends, taken once nothing more is published). A look at the store's
# offsets with sqlite3 costs a few ms, where one `jointops lag` costs some
# 80 ms of a process start and a Kafka round trip, which would both blur a
# figure of a few hundred ms and take a core from the rollup. Once the
# offsets say so, one `jointops lag` look must confirm a zero lag. Sets
# seen_ns to the moment the offsets were seen there.
counted() { # STORE END
  local next
  next=$(sqlite3 -readonly "$1" "SELECT COALESCE(SUM(next), 0) FROM offsets WHERE topic = '$JOINTOPS__KAFKA__TOPIC'" 2>/dev/null) || return 1
  (( next >= $2 )) || return 1
  seen_ns=$(date +%s%N)
  lag_is_zero "$1"
}

# Runs CHECK until it succeeds, at most TIMEOUT_S, failing at once if the
# process PID (the rollup being waited for, logging to LOG) dies. Sets done_ns to the moment
# of the first successful look (seen_ns if CHECK set it, else the end of the
# look) and poll_ms to the interval between looks: the figure's resolution.
# The 10 ms between looks only spaces them, so that polling does not take a
# whole core from the rollup on a 2-core machine; the condition is the check.
poll_until() { # WHAT TIMEOUT_S PID LOG CHECK...
  local what=$1 deadline=$(( $(date +%s) + $2 )) pid=$3 log=$4 first polls=0
  shift 4
  first=$(date +%s%N)
  while :; do
    polls=$(( polls + 1 ))
    seen_ns=
    if "$@"; then
      done_ns=${seen_ns:-$(date +%s%N)}
      poll_ms=$(( $(ms_since "$first" "$done_ns") / polls ))
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "$what: the rollup (pid $pid) exited before it was done; its log ends: $(tail -3 "$log")"
    (( $(date +%s) < deadline )) || die "$what: not done after $2 s; last lag look: $(tail -1 "$work/lag.out" 2>/dev/null); the rollup's log ends: $(tail -3 "$log")"
    sleep 0.01
  done
}

# The rollup's peak resident set in KiB, read before it is stopped.
vm_hwm_kb() { # PID
  awk '/^VmHWM/ {print $2}' "/proc/$1/status"
}

# Runs a command under /usr/bin/time: sets run_ms (wall, from outside) and
# run_rss_kb (its peak RSS); stdout goes to OUT.
timed() { # OUT CMD...
  local out=$1 start
  shift
  start=$(date +%s%N)
  /usr/bin/time -f %M -o "$work/time.out" "$@" >"$out" || die "failed: $*"
  run_ms=$(ms_since "$start")
  run_rss_kb=$(tail -1 "$work/time.out")
}

delete_topic() { # TOPIC
  "$here/kafka.sh" tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$JOINTOPS__KAFKA__BOOTSTRAP" \
    --delete --topic "$1" >/dev/null 2>&1 || true
}
