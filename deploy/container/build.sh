#!/usr/bin/env bash
# Builds the jointops container image with podman (buildah underneath) and
# prints its reference as the last line.
#   deploy/container/build.sh                  localhost/jointops:<version>-<commit>
#   IMAGE=registry.example/jointops:1.2 deploy/container/build.sh
#   BUILDER_IMAGE=… RUNTIME_IMAGE=… deploy/container/build.sh   other bases
#
# It installs podman and buildah with apt-get when they are missing, and
# writes its own containers.conf (runc, cgroupfs, explicit ulimits), which
# deploy/container/test.sh uses too: CONTAINERS_CONF=target/container/containers.conf.
#
# Base images: the Dockerfile's defaults (docker.io/library/rust:1-bookworm,
# docker.io/library/debian:bookworm-slim) when they can be pulled. When they
# cannot (no registry reachable), it makes local ones once, from Debian's
# packages only:
#   localhost/jointops-base/debian:bookworm   debootstrap --variant=minbase bookworm, slimmed
#                                             like debian:bookworm-slim (no docs, man, locales)
#   localhost/jointops-base/rust:bookworm     the same with cmake, g++, pkg-config,
#                                             libssl-dev, and this machine's Rust
#                                             toolchain copied in (`rustc --print
#                                             sysroot`), since rustup's download
#                                             site is not a package registry
# JOINTOPS_REBASE=1 makes them again (e.g. for Debian's security updates).
# The cargo registry and target folder are build caches (RUN --mount=type=cache),
# so a second build recompiles only what changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
work="$repo/target/container"
mkdir -p "$work"
say() { printf '== build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    say "installing $* with apt-get"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# ------------------------------------------------------------- podman ---
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v buildah >/dev/null || missing+=(buildah)
command -v runc >/dev/null || missing+=(runc)
((${#missing[@]} == 0)) || apt_install "${missing[@]}" uidmap
# Our own engine settings, whatever /etc/containers says: runc (the runtime
# found to work on these hosts), cgroupfs (no systemd here), and ulimits
# given explicitly: podman's defaults (nofile 1048576, and the caller's
# nproc) are refused here by runc ("error setting rlimit type 7/6:
# operation not permitted"); the caller's nofile hard limit and a modest
# nproc work.
nofile=$(ulimit -Hn)
[[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
nproc=8192
cat >"$work/containers.conf" <<CONF
# Written by deploy/container/build.sh; used through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$work/containers.conf"

# hadolint first: a Dockerfile it refuses is not built.
# shellcheck source=deploy/tools.sh
source "$here/../tools.sh"
deploy_tool hadolint
hadolint "$here/Dockerfile" || die "hadolint refuses deploy/container/Dockerfile"

# ------------------------------------------------------------ versions ---
version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- Cargo.toml Cargo.lock src schemas web docs/openapi.json deploy/container 2>/dev/null) ]]; then
    revision="$revision-dirty"
fi
image="${IMAGE:-localhost/jointops:$version-$revision}"

# --------------------------------------------------------- base images ---
default_builder=docker.io/library/rust:1-bookworm
default_runtime=docker.io/library/debian:bookworm-slim
local_runtime=localhost/jointops-base/debian:bookworm
local_builder=localhost/jointops-base/rust:bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

can_pull() { # IMAGE: present, or pulled within a minute
    podman image exists "$1" || timeout 60 podman pull -q "$1" >/dev/null 2>&1
}

debootstrap_to() { # DIR [--include=…]
    command -v debootstrap >/dev/null || apt_install debootstrap
    local dir=$1
    shift
    rm -rf "$dir"
    mkdir -p "$work/debs"
    as_root debootstrap --variant=minbase --cache-dir="$work/debs" "$@" bookworm "$dir" "$mirror" >"$dir.log" 2>&1 \
        || { tail -20 "$dir.log" >&2; die "debootstrap into $dir failed (log $dir.log)"; }
    # Debian's own sources and security updates for later apt-get runs; no caches.
    cat >"$dir/etc/apt/sources.list" <<SRC
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
    rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/var/log/* "$dir"/tmp/*
}

slim() { # DIR: what debian:bookworm-slim leaves out (docs, man pages, locales), now and for later installs
    local dir=$1
    cat >"$dir/etc/dpkg/dpkg.cfg.d/jointops-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
    find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/lintian/*
}

import_dir() { # DIR IMAGE [--change …]…
    local dir=$1 ref=$2
    shift 2
    tar --numeric-owner -C "$dir" -c . | podman import -q "$@" - "$ref" >/dev/null
    as_root rm -rf "$dir"
}

make_local_runtime() {
    say "making $local_runtime (debootstrap --variant=minbase bookworm)"
    debootstrap_to "$work/rootfs-runtime"
    slim "$work/rootfs-runtime"
    import_dir "$work/rootfs-runtime" "$local_runtime" --change 'CMD ["/bin/bash"]'
}

make_local_builder() {
    local sysroot
    command -v rustc >/dev/null || die "no rustc on this machine to copy into the local builder base (install Rust, or make $default_builder pullable)"
    sysroot=$(rustc --print sysroot)
    say "making $local_builder (minbase bookworm, build packages, Rust $(rustc --version | cut -d' ' -f2) from $sysroot)"
    debootstrap_to "$work/rootfs-builder" --include=ca-certificates,cmake,g++,make,pkg-config,libssl-dev
    # The toolchain as the official installer lays it out under /usr/local:
    # rustc finds its libraries from its own path (../lib/rustlib). No docs.
    local d
    for d in bin lib libexec etc; do
        [[ -d $sysroot/$d ]] && cp -a "$sysroot/$d/." "$work/rootfs-builder/usr/local/$d/"
    done
    mkdir -p "$work/rootfs-builder/usr/local/cargo"
    # Like rust:1-bookworm: CARGO_HOME=/usr/local/cargo (its registry is the build's cache mount).
    import_dir "$work/rootfs-builder" "$local_builder" \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]'
}

builder="${BUILDER_IMAGE:-}"
runtime="${RUNTIME_IMAGE:-}"
if [[ -n ${JOINTOPS_REBASE:-} ]]; then
    podman rmi -f "$local_runtime" "$local_builder" >/dev/null 2>&1 || true
fi
if [[ -z $runtime ]]; then
    if can_pull "$default_runtime"; then runtime=$default_runtime
    else
        podman image exists "$local_runtime" || make_local_runtime
        runtime=$local_runtime
    fi
fi
if [[ -z $builder ]]; then
    if can_pull "$default_builder"; then builder=$default_builder
    else
        podman image exists "$local_builder" || make_local_builder
        builder=$local_builder
    fi
fi
say "builder base $builder; runtime base $runtime"

# --------------------------------------------------------------- build ---
# --format docker keeps HEALTHCHECK (the OCI image format has no such field);
# --network host: cargo fetches crates from crates.io during the build.
# The CA bundle cargo's downloads are checked against: the host's, which
# knows any TLS-inspecting egress this host sits behind (BUILD_CA_BUNDLE=…).
ca="${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
secret=()
[[ -s $ca ]] && secret=(--secret "id=cacert,src=$ca")
t0=$SECONDS
podman build \
    "${secret[@]}" \
    --format docker \
    --network host \
    --layers \
    -f "$here/Dockerfile" \
    --ignorefile "$here/Dockerfile.dockerignore" \
    --build-arg "BUILDER_IMAGE=$builder" \
    --build-arg "RUNTIME_IMAGE=$runtime" \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -t "$image" \
    "$repo" >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log" >&2; die "podman build failed (log $work/build.log)"; }
size=$(podman image inspect --format '{{.Size}}' "$image")
say "built in $((SECONDS - t0)) s, $((size / 1000000)) MB (log $work/build.log)"
echo "$image" >"$work/image"
echo "$image"
