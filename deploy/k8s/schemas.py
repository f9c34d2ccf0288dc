#!/usr/bin/env python3
"""JSON schemas for kubeconform, made offline.

  schemas.py kubernetes SRC DEST   Kubernetes' own schemas as the PyPI package
                                   kubernetes-validate ships them (SRC: its
                                   v1.NN.0-local-strict folder), made loadable
                                   from files: each kind's `$id` removed and its
                                   `/api/_definitions.json` refs made relative.
  schemas.py crd CRD.yaml... DEST  A CustomResourceDefinition's openAPIV3Schema
                                   per version, as DEST/<group>/<kind>_<version>.json,
                                   strict like kubeconform's own: an object that
                                   lists its properties allows no others (unless
                                   it says x-kubernetes-preserve-unknown-fields).
"""
import glob
import json
import os
import sys

import yaml


def relative_refs(node):
    if isinstance(node, dict):
        return {
            k: v.replace("/api/_definitions.json", "_definitions.json")
            if k == "$ref" and isinstance(v, str)
            else relative_refs(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [relative_refs(v) for v in node]
    return node


def kubernetes(src, dest):
    os.makedirs(dest, exist_ok=True)
    n = 0
    for path in glob.glob(os.path.join(src, "*.json")):
        name = os.path.basename(path)
        if name == "all.json":
            continue
        with open(path) as f:
            schema = json.load(f)
        schema.pop("$id", None)
        if name != "_definitions.json":
            schema = relative_refs(schema)
        with open(os.path.join(dest, name), "w") as f:
            json.dump(schema, f)
        n += 1
    if n < 100:
        sys.exit(f"schemas.py: only {n} schemas in {src}")
    print(f"{n} Kubernetes schemas in {dest}")


def strict(node):
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-") or k == "x-kubernetes-preserve-unknown-fields"}
    if node.get("x-kubernetes-int-or-string"):
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    out.pop("x-kubernetes-preserve-unknown-fields", None)
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def crd(paths, dest):
    for path in paths:
        with open(path) as f:
            doc = yaml.safe_load(f)
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        os.makedirs(os.path.join(dest, group), exist_ok=True)
        for version in doc["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            # apiVersion and kind as kubeconform checks them for built-in kinds.
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
            props["kind"] = {"type": "string", "enum": [kind]}
            out = os.path.join(dest, group, f"{kind.lower()}_{version['name']}.json")
            with open(out, "w") as f:
                json.dump(schema, f, indent=1)
            print(f"{group}/{kind} {version['name']}: {out}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "kubernetes":
        kubernetes(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "crd":
        crd(sys.argv[2:-1], sys.argv[-1])
    else:
        sys.exit(__doc__)
