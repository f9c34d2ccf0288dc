#!/usr/bin/env bash
# The compose stack's file, checked offline: against the Compose
# Specification's JSON schema (check-jsonschema's vendor.compose-spec), and
# the files it names exist (those under secrets/ are made by secrets.sh),
# every service has a health check and no secret value in its environment. (Bringing it up needs the apache/kafka image: README.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/tools.sh
source "$here/../tools.sh"
deploy_tool check-jsonschema pyyaml
printf '\n== compose: check-jsonschema --builtin-schema vendor.compose-spec\n'
check-jsonschema --builtin-schema vendor.compose-spec "$here/compose.yaml"
"$DEPLOY_PY" - "$here" <<'PY'
import os, re, sys, yaml
here = sys.argv[1]
c = yaml.safe_load(open(os.path.join(here, "compose.yaml")))
bad = []
for kind in ("configs", "secrets"):
    for name, spec in c.get(kind, {}).items():
        path = spec["file"]
        if path.startswith("./secrets/"):
            continue  # made by secrets.sh
        if not os.path.exists(os.path.join(here, path)):
            bad.append(f"{kind}.{name}: {path} does not exist")
for svc, s in c["services"].items():
    for v in s.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith(".") and not os.path.exists(os.path.join(here, src)):
            bad.append(f"services.{svc}: bind mount {src} does not exist")
        if not src.startswith(".") and src not in c.get("volumes", {}):
            bad.append(f"services.{svc}: volume {src} is not a named volume")
    for s_ in s.get("secrets", []):
        if (s_ if isinstance(s_, str) else s_["source"]) not in c.get("secrets", {}):
            bad.append(f"services.{svc}: secret {s_} is not declared")
    for dep, cond in s.get("depends_on", {}).items():
        if dep not in c["services"]:
            bad.append(f"services.{svc}: depends on unknown {dep}")
    if svc != "kafka-setup" and "healthcheck" not in s:
        bad.append(f"services.{svc}: no healthcheck")
    for k, v in (s.get("environment") or {}).items():
        if re.search(r"SECRET|PASSWORD|TOKEN", k) and not str(v).startswith("/run/secrets/"):
            bad.append(f"services.{svc}: {k} holds a value, not a secret file")
if bad:
    sys.exit("\n".join(bad))
print(f"compose: {len(c['services'])} services, {len(c.get('secrets', {}))} secrets, {len(c.get('volumes', {}))} named volumes: consistent")
PY
