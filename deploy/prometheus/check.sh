#!/usr/bin/env bash
# The alerts and the dashboard, checked:
#   1. promtool check rules deploy/prometheus/alerts.yaml
#   2. promtool test rules deploy/prometheus/alerts_test.yaml (each alert
#      fires in one test and stays quiet in another)
#   3. every query of deploy/grafana/jointops.json parses (promtool checks
#      them as recording rules, Grafana's variables filled in)
#   4. every metric the alerts and the dashboard query is one the processes
#      expose: in the real scrapes that the Rust tests save in
#      target/metrics/{rollup,serve,agent}.prom (tests/metrics.rs) when
#      target/metrics/ has files, and then each of the three must be there;
#      until then, in the list of names of the ops issue (metrics.txt).
# usage: deploy/prometheus/check.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/tools.sh
source "$here/../tools.sh"
repo="$DEPLOY_REPO"
work="$DEPLOY_TOOLS/prometheus"
mkdir -p "$work"
step() { printf '\n== prometheus: %s\n' "$*"; }

deploy_tool promtool pyyaml
step "promtool check rules (promtool $(promtool --version 2>&1 | awk 'NR==1 {print $3}'))"
promtool check rules "$here/alerts.yaml"
step "promtool test rules"
promtool test rules "$here/alerts_test.yaml"

step "the dashboard's queries parse"
# Every PromQL expression of the alerts and the dashboard, one a line, with
# Grafana's variables filled in; the dashboard's as recording rules for promtool.
"$DEPLOY_PY" - "$here/alerts.yaml" "$repo/deploy/grafana/jointops.json" "$work" <<'PY'
import json, sys, yaml
alerts, dashboard, work = sys.argv[1:]
exprs = [r["expr"] for g in yaml.safe_load(open(alerts))["groups"] for r in g["rules"]]
dash = json.load(open(dashboard))
queries = []
def walk(panels):
    for p in panels:
        walk(p.get("panels", []))
        queries.extend(t["expr"] for t in p.get("targets", []))
walk(dash["panels"])
for v in dash.get("templating", {}).get("list", []):
    if v.get("type") == "query":
        queries.append(v["definition"].replace("label_values(", "").split(",")[0])
if not queries:
    sys.exit("no queries in the dashboard")
fill = lambda e: e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$operation", ".*")
with open(f"{work}/dashboard-rules.yaml", "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(queries):
        out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(fill(e))}\n")
with open(f"{work}/queries.txt", "w") as out:
    for e in exprs + queries:
        out.write(" ".join(fill(e).split()) + "\n")
print(f"{len(queries)} dashboard queries, {len(exprs)} alert expressions")
PY
promtool check rules "$work/dashboard-rules.yaml" >/dev/null

step "every metric queried is exposed"
# Names as queried: a histogram's _bucket/_sum/_count are series names of its own.
queried=$(grep -oE 'jointops_[a-z0-9_]+' "$work/queries.txt" | sort -u)
component() { # METRIC -> the scrape that must have it
    case $1 in
        jointops_api_*) echo serve ;;
        jointops_agent_*) echo agent ;;
        *) echo rollup ;;
    esac
}
scrapes="${JOINTOPS_METRICS_DIR:-$repo/target/metrics}"
missing=0
if compgen -G "$scrapes/*.prom" >/dev/null; then
    for c in rollup serve agent; do
        [[ -s $scrapes/$c.prom ]] || { echo "MISSING scrape: $scrapes/$c.prom (tests/metrics.rs writes it)" >&2; missing=1; }
    done
    for m in $queried; do
        c=$(component "$m")
        f="$scrapes/$c.prom"
        [[ -s $f ]] || continue
        if ! grep -qE "^$m(\{| )" "$f"; then
            echo "MISSING in $c's scrape ($f): $m" >&2
            missing=1
        fi
    done
    source="the real scrapes in $scrapes"
else
    for m in $queried; do
        grep -qx "$m" "$here/metrics.txt" || { echo "UNKNOWN metric (not in metrics.txt): $m" >&2; missing=1; }
    done
    source="deploy/prometheus/metrics.txt (no scrapes in $scrapes yet: the Rust tests write them)"
fi
((missing == 0)) || { echo "check.sh: FAILED: queried metrics missing from $source" >&2; exit 1; }
echo "$(wc -w <<<"$queried") metrics queried, all in $source"
