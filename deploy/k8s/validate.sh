#!/usr/bin/env bash
# Renders every kustomize tree under deploy/k8s (base and each overlay) and
# validates what comes out with kubeconform -strict, offline:
#   - Kubernetes' kinds against the JSON schemas that the PyPI package
#     kubernetes-validate ships (Kubernetes $K8S_VERSION), made loadable
#     from files by schemas.py;
#   - Strimzi's KafkaTopic and KafkaUser against the schemas of the CRDs
#     that Strimzi $STRIMZI_VERSION installs, generated here by Strimzi's own
#     CRD generator from its API model (both from Maven Central; Java 21+),
#     strict like kubeconform's (no property a CRD does not list).
# Then a few checks of our own (policy.py): the securityContext, probes and
# resources of every container, the topics' settings, the ACLs of
# contract §7, and no real-looking secret in a Secret.
# usage: deploy/k8s/validate.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/tools.sh
source "$here/../tools.sh"
K8S_VERSION=1.37.0
STRIMZI_VERSION=$(sed -n 's:.*<strimzi.version>\(.*\)</strimzi.version>.*:\1:p' "$here/strimzi/pom.xml")
work="$DEPLOY_TOOLS/k8s"
mkdir -p "$work"
step() { printf '\n== k8s: %s\n' "$*"; }

step "tools: kustomize $KUSTOMIZE_VERSION, kubeconform $KUBECONFORM_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
deploy_tool kustomize kubeconform kubernetes-validate pyyaml

k8s_schemas="$work/schemas-k8s-$K8S_VERSION"
if [[ ! -f $k8s_schemas/.done ]]; then
    src=$("$DEPLOY_PY" -c 'import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))')
    src="$src/kubernetes-json-schema/v$K8S_VERSION-local-strict"
    [[ -d $src ]] || { echo "validate.sh: kubernetes-validate has no schemas for $K8S_VERSION ($src)" >&2; exit 1; }
    rm -rf "$k8s_schemas"
    "$DEPLOY_PY" "$here/schemas.py" kubernetes "$src" "$k8s_schemas"
    touch "$k8s_schemas/.done"
fi

strimzi_schemas="$work/schemas-strimzi-$STRIMZI_VERSION"
if [[ ! -f $strimzi_schemas/.done ]]; then
    step "Strimzi $STRIMZI_VERSION CRDs (KafkaTopic, KafkaUser) from its CRD generator"
    java=
    for j in "${JAVA21_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-21-jdk-amd64 "${JAVA_HOME:-}"; do
        [[ -n $j && -x $j/bin/java ]] || continue
        v=$("$j/bin/java" -version 2>&1 | awk -F'"' '/version/ {split($2, a, "."); print a[1]; exit}')
        if ((v >= 21)); then java="$j/bin/java"; break; fi
    done
    if [[ -z $java ]] && command -v java >/dev/null; then
        v=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, a, "."); print a[1]; exit}')
        ((v >= 21)) && java=java
    fi
    [[ -n $java ]] || { echo "validate.sh: Strimzi's CRD generator needs Java 21 or later (set JAVA21_HOME)" >&2; exit 1; }
    command -v mvn >/dev/null || { echo "validate.sh: mvn is missing (Strimzi's CRD generator comes from Maven Central)" >&2; exit 1; }
    mvn -q -f "$here/strimzi/pom.xml" dependency:build-classpath -Dmdep.outputFile="$work/strimzi.classpath" >"$work/mvn.log" 2>&1 \
        || { tail -20 "$work/mvn.log" >&2; exit 1; }
    rm -rf "$work/crds" "$strimzi_schemas"
    mkdir -p "$work/crds"
    "$java" -cp "$(cat "$work/strimzi.classpath")" io.strimzi.crdgenerator.CrdGenerator \
        --yaml --crd-api-version v1 --api-versions v1 --storage-version v1 \
        "io.strimzi.api.kafka.model.topic.KafkaTopic=$work/crds/kafkatopic.yaml" \
        "io.strimzi.api.kafka.model.user.KafkaUser=$work/crds/kafkauser.yaml" >"$work/crdgen.log" 2>&1 \
        || { tail -20 "$work/crdgen.log" >&2; exit 1; }
    "$DEPLOY_PY" "$here/schemas.py" crd "$work/crds/kafkatopic.yaml" "$work/crds/kafkauser.yaml" "$strimzi_schemas"
    touch "$strimzi_schemas/.done"
fi

kubeconform_args=(-strict -summary -output text
    -schema-location "$k8s_schemas/{{.ResourceKind}}{{.KindSuffix}}.json"
    -schema-location "$strimzi_schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json")

# The Strimzi schemas must refuse what Strimzi refuses, or passing says nothing.
step "the schemas refuse a wrong KafkaUser ACL and a wrong KafkaTopic"
cat >"$work/wrong.yaml" <<'YAML'
apiVersion: kafka.strimzi.io/v1
kind: KafkaUser
metadata: {name: wrong}
spec:
  authentication: {type: scram-sha-512}
  authorization:
    type: simple
    acls:
      - resource: {type: topic, name: jointops.outcomes}
        operations: [Wrte]
---
apiVersion: kafka.strimzi.io/v1
kind: KafkaTopic
metadata: {name: wrong}
spec:
  partitions: 6
  replica: 3
YAML
out=$(kubeconform "${kubeconform_args[@]}" "$work/wrong.yaml" 2>&1 || true)
grep -q "Invalid: 2" <<<"$out" || { echo "$out" >&2; echo "validate.sh: the Strimzi schemas accepted wrong resources" >&2; exit 1; }
echo "refused, as they should be"

failed=0
for tree in base overlays/local overlays/production; do
    step "kustomize build deploy/k8s/$tree | kubeconform -strict"
    out="$work/${tree//\//-}.yaml"
    kustomize build "$here/$tree" >"$out"
    kubeconform "${kubeconform_args[@]}" "$out" || failed=1
    "$DEPLOY_PY" "$here/policy.py" "$tree" "$out" || failed=1
done
((failed == 0)) || { echo "validate.sh: FAILED" >&2; exit 1; }
echo "k8s: every tree renders and validates (rendered manifests in $work)"
