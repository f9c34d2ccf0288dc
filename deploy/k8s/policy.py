#!/usr/bin/env python3
"""Checks of our own on a rendered tree (deploy/k8s/validate.sh), beyond the
schemas: what the ops issue asks of every pod, topic and principal.
usage: policy.py TREE RENDERED.yaml   (TREE: base, overlays/local, overlays/production)
"""
import sys

import yaml

tree, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
errors = []


def err(where, what):
    errors.append(f"{tree}: {where}: {what}")


def by_kind(kind):
    return [d for d in docs if d["kind"] == kind]


production = tree != "overlays/local"  # base is what production inherits

for w in by_kind("StatefulSet") + by_kind("Deployment"):
    name = f"{w['kind']}/{w['metadata']['name']}"
    pod = w["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        err(name, "pod securityContext.runAsNonRoot is not true")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        err(name, "pod seccompProfile is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        err(name, "the service account token is mounted")
    if w["spec"].get("replicas") != 1:
        err(name, "replicas is not 1 (one writer per store or state folder)")
    for c in pod.get("initContainers", []) + pod["containers"]:
        where = f"{name} container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            err(where, "allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(where, "readOnlyRootFilesystem is not true")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            err(where, "capabilities do not drop ALL")
        res = c.get("resources", {})
        if "memory" not in res.get("limits", {}) or not res.get("requests"):
            err(where, "no resource requests or memory limit")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if c in pod["containers"]:
            if "livenessProbe" not in c:
                err(where, "no livenessProbe")
            if not {"/var/lib/jointops", "/tmp"} <= mounts:
                err(where, "state (/var/lib/jointops) or /tmp is not a volume (read-only root)")
    if w["kind"] == "StatefulSet":
        serve = [c for c in pod["containers"] if c["name"] == "serve"]
        if not serve:
            err(name, "no serve container")
        else:
            s = serve[0]
            if s.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                err(name, "serve's liveness probe is not /healthz")
            if s.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                err(name, "serve's readiness probe is not /readyz")
        if not w["spec"].get("volumeClaimTemplates"):
            err(name, "no volume claim for the store")

if not by_kind("PodDisruptionBudget"):
    err("PodDisruptionBudget", "none")
deny = [n for n in by_kind("NetworkPolicy") if n["spec"].get("podSelector") == {} and set(n["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} and not n["spec"].get("ingress") and not n["spec"].get("egress")]
if not deny:
    err("NetworkPolicy", "no default deny of ingress and egress")

topics = {t["spec"].get("topicName", t["metadata"]["name"]): t for t in by_kind("KafkaTopic")}
for name in ("jointops.outcomes", "jointops.outcomes.dlq"):
    t = topics.get(name)
    if not t:
        err("KafkaTopic", f"{name} missing")
        continue
    want = (3, 2) if production else (1, 1)
    got = (t["spec"].get("replicas"), t["spec"].get("config", {}).get("min.insync.replicas"))
    if got != want:
        err(f"KafkaTopic {name}", f"replicas, min.insync.replicas are {got}, want {want}")
if "jointops.outcomes" in topics and topics["jointops.outcomes"]["spec"]["config"].get("retention.ms") != -1:
    err("KafkaTopic jointops.outcomes", "retention.ms is not -1 (the input topic is the record)")


def acls(user):
    out = set()
    for a in user["spec"]["authorization"]["acls"]:
        r = a["resource"]
        for op in a["operations"]:
            out.add((r["type"], r.get("name", ""), op))
    return out


# Contract §7.
hub_want = {
    ("topic", "jointops.outcomes", "Read"),
    ("group", "jointops-rollup", "Read"),
    ("topic", "jointops.outcomes.dlq", "Write"),
    ("topic", "jointops.outcomes", "Create"),
    ("topic", "jointops.outcomes.dlq", "Create"),
    ("cluster", "", "IdempotentWrite"),
}
force_want = {("topic", "jointops.outcomes", "Write"), ("cluster", "", "IdempotentWrite")}
users = by_kind("KafkaUser")
if not users:
    err("KafkaUser", "none")
for u in users:
    name = u["metadata"]["name"]
    if u["spec"]["authentication"]["type"] != "scram-sha-512":
        err(f"KafkaUser {name}", "authentication is not scram-sha-512")
    want = hub_want if name == "jointops-hub" else force_want
    if acls(u) != want:
        err(f"KafkaUser {name}", f"ACLs {sorted(acls(u))} are not contract §7's {sorted(want)}")

for s in by_kind("Secret"):
    if tree == "overlays/production":
        err(f"Secret {s['metadata']['name']}", "production must not carry Secrets (made out of band)")
    for k, v in (s.get("stringData") or {}).items():
        if "PLACEHOLDER" not in v:
            err(f"Secret {s['metadata']['name']}", f"{k} is not a placeholder")
    if s.get("data"):
        err(f"Secret {s['metadata']['name']}", "data (base64) in the repository: use placeholders in stringData")

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"policy: {tree}: {len(docs)} resources pass")
