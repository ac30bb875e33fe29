#!/usr/bin/env bash
# Build the production stack's images on this machine, from Debian packages, pulling nothing from
# a container registry (`make images`). Idempotent and cached by content: an image whose inputs
# did not change is not rebuilt, so a second run takes a few seconds.
#
#   director/debian:bookworm          a minimal Debian bookworm (mmdebstrap, then `docker import`;
#                                     the rootfs tarball is cached in $STACK_CACHE_DIR)
#   director/orchestrator:<hash>      ./Dockerfile on that base: Debian's python3 and the package
#                                     from this working tree (its locked dependencies as wheels
#                                     downloaded here)
#   director/rabbitmq:<hash>          deploy/rabbitmq/Dockerfile: Debian's rabbitmq-server
#   director/traefik:latest           the local stack's Traefik image (scripts/stack-up.sh builds it)
#
# <hash> is a digest of everything the image is built from (base image, build context, arguments);
# `:latest` follows the newest build. The resolved references are written to
# $STACK_CACHE_DIR/images.env (read by scripts/stack.sh) and printed.
#
# Env:
#   STACK_CACHE_DIR    rootfs tarballs, wheels, build contexts   (/var/cache/director-stack)
#   DEBIAN_MIRROR      Debian archive                            (http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR                                       (http://deb.debian.org/debian-security)
#   REFRESH_BASE=1     rebuild the Debian rootfs (new security updates) even if cached
#   FORCE_IMAGES=1     rebuild every image (Docker's layer cache still applies)
#   PYTHON             a Python >= 3.11 with pip, to build the wheels  (python3)
#   IMAGES_ONLY=base   only director/debian:bookworm
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE_DIR=${STACK_CACHE_DIR:-/var/cache/director-stack}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
REFRESH_BASE=${REFRESH_BASE:-0}
FORCE_IMAGES=${FORCE_IMAGES:-0}
PYTHON=${PYTHON:-python3}
DEBIAN_IMAGE=director/debian:bookworm
ORCHESTRATOR_REPO=director/orchestrator
RABBITMQ_REPO=director/rabbitmq
TRAEFIK_IMAGE=director/traefik:latest
LABEL=com.director.build   # the digest an image was built from

T0=$SECONDS
log() { printf '[images] %s\n' "$*"; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (docker, mmdebstrap)"
docker info >/dev/null 2>&1 || die "docker is not running (make up)"
mkdir -p "$CACHE_DIR"
WORK=$(mktemp -d /tmp/director-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

built_from() { docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect -f '{{.Id}}' "$1"; }
# A digest of a directory's files (names, modes, contents) and extra strings.
digest_dir() { # dir extra...
    local dir=$1; shift
    { printf '%s\n' "$@"; (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z |
        xargs -0 -r stat -c '%n %a' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r cat); } |
        sha256sum | cut -c1-16
}

# ---------------------------------------------------------------- 1. Debian bookworm base
# The recipe is the mmdebstrap command: its digest names the cached tarball and labels the image.
BASE_ARGS=(
    --variant=minbase --include=ca-certificates
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    # As Docker's own Debian images: services are never started by a package install, no
    # recommends, no apt caches left in layers.
    --customize-hook='printf "#!/bin/sh\nexit 101\n" >"$1/usr/sbin/policy-rc.d"; chmod 0755 "$1/usr/sbin/policy-rc.d"'
    --customize-hook='printf "APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n" >"$1/etc/apt/apt.conf.d/90director"'
    --customize-hook='printf "%s\n" "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" >"$1/etc/apt/apt.conf.d/docker-clean"'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/etc/machine-id "$1"/etc/hostname'
    bookworm -
    "deb $MIRROR bookworm main"
    "deb $MIRROR bookworm-updates main"
    "deb $SECURITY_MIRROR bookworm-security main"
)
base_recipe=$(printf '%s\n' "${BASE_ARGS[@]}" | sha256sum | cut -c1-16)
tarball=$CACHE_DIR/debian-bookworm-$base_recipe.tar
if [ "$REFRESH_BASE" = 1 ]; then rm -f "$tarball"; fi
if [ "$FORCE_IMAGES" != 1 ] && [ "$REFRESH_BASE" != 1 ] && [ "$(built_from "$DEBIAN_IMAGE")" = "$base_recipe" ]; then
    log "$DEBIAN_IMAGE present ($base_recipe)"
else
    if [ ! -s "$tarball" ]; then
        command -v mmdebstrap >/dev/null || {
            log "apt: installing mmdebstrap"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >"$WORK/apt.log" 2>&1 ||
                { cat "$WORK/apt.log" >&2; die "apt-get install mmdebstrap failed"; }
        }
        log "building the Debian bookworm rootfs with mmdebstrap (about 30 s)"
        mmdebstrap --quiet "${BASE_ARGS[@]}" >"$tarball.tmp" 2>"$WORK/mmdebstrap.log" ||
            { tail -n 30 "$WORK/mmdebstrap.log" >&2; rm -f "$tarball.tmp"; die "mmdebstrap failed"; }
        mv -f "$tarball.tmp" "$tarball"
    fi
    log "importing $DEBIAN_IMAGE from $(basename "$tarball")"
    docker import --change "LABEL $LABEL=$base_recipe" --change 'CMD ["/bin/bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$tarball" "$DEBIAN_IMAGE" >/dev/null
fi
# Older rootfs tarballs are of no use any more.
find "$CACHE_DIR" -maxdepth 1 -name 'debian-bookworm-*.tar' ! -name "$(basename "$tarball")" -delete
base_id=$(image_id "$DEBIAN_IMAGE")
# The local stack needs only this one (the tools stage of site image builds: scripts/stack-up.sh).
[ "${IMAGES_ONLY:-}" != base ] || exit 0

# ---------------------------------------------------------------- 2. images from Dockerfiles
# build REPO CONTEXT_DIR BUILD_ARG... : tag REPO:<digest> and REPO:latest; sets $built.
build() {
    local repo=$1 context=$2; shift 2
    local digest args=() a
    digest=$(digest_dir "$context" "$base_id" "$@")
    built=$repo:$digest
    if [ "$FORCE_IMAGES" != 1 ] && [ "$(built_from "$built")" = "$digest" ]; then
        log "$built present"
    else
        log "building $built"
        for a in "$@"; do args+=(--build-arg "$a"); done
        # The classic builder: it takes FROM images from the local store and never asks a registry.
        DOCKER_BUILDKIT=0 docker build -q --label "$LABEL=$digest" "${args[@]}" -t "$built" "$context" \
            >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; die "docker build of $repo failed"; }
    fi
    docker tag "$built" "$repo:latest"
}

# The orchestrator: its locked dependencies as wheels downloaded here (this machine reaches PyPI
# from the host only; hashes checked), cached by the lock; then a context of exactly what the
# Dockerfile copies.
deps_key=$(cat "$ROOT/requirements/server.txt" "$ROOT/requirements/build.txt" | sha256sum | cut -c1-16)
wheels=$CACHE_DIR/wheels/$deps_key
if [ ! -f "$wheels/.complete" ]; then
    log "downloading the locked dependencies' wheels ($deps_key)"
    rm -rf "$wheels"; mkdir -p "$wheels"
    "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps -d "$wheels" \
        -r "$ROOT/requirements/server.txt" -r "$ROOT/requirements/build.txt" >"$WORK/pip.log" 2>&1 ||
        { tail -n 30 "$WORK/pip.log" >&2; die "pip download failed"; }
    touch "$wheels/.complete"
fi
find "$CACHE_DIR/wheels" -mindepth 1 -maxdepth 1 ! -name "$deps_key" -exec rm -rf {} +
context=$CACHE_DIR/build/orchestrator
rm -rf "$context"; mkdir -p "$context/wheels" "$context/requirements"
cp "$ROOT/Dockerfile" "$ROOT/pyproject.toml" "$context/"
cp "$ROOT/requirements/server.txt" "$ROOT/requirements/build.txt" "$context/requirements/"
# The README is only the package's long description: a stub, so a documentation change rebuilds
# (and rolls) nothing.
printf '# orchestrator\n\nSee the README of the repository.\n' >"$context/README.md"
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' -cf - orchestrator contract |
    tar -C "$context" -xf -
cp "$wheels"/*.whl "$context/wheels/"
build "$ORCHESTRATOR_REPO" "$context" "BASE=$DEBIAN_IMAGE" "PIP_INDEX_ARGS=--no-index"
ORCHESTRATOR_IMAGE=$built

context=$CACHE_DIR/build/rabbitmq
rm -rf "$context"; mkdir -p "$context"
cp "$ROOT/deploy/rabbitmq/Dockerfile" "$ROOT/deploy/rabbitmq/entrypoint.sh" "$context/"
build "$RABBITMQ_REPO" "$context" "BASE=$DEBIAN_IMAGE"
RABBITMQ_IMAGE=$built

# ---------------------------------------------------------------- 3. Traefik
docker image inspect "$TRAEFIK_IMAGE" >/dev/null 2>&1 ||
    die "$TRAEFIK_IMAGE is missing: scripts/stack-up.sh builds it (make up)"
log "$TRAEFIK_IMAGE present"

# Earlier builds no container uses any more.
for repo in "$ORCHESTRATOR_REPO" "$RABBITMQ_REPO"; do
    keep=$(image_id "$repo:latest")
    docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}}' "$repo" | while read -r ref id; do
        [ "sha256:$id" = "$keep" ] || [[ $keep == sha256:$id* ]] || docker image rm "$ref" >/dev/null 2>&1 || true
    done
done

cat >"$CACHE_DIR/images.env" <<EOF
ORCHESTRATOR_IMAGE=$ORCHESTRATOR_IMAGE
RABBITMQ_IMAGE=$RABBITMQ_IMAGE
TRAEFIK_IMAGE=$TRAEFIK_IMAGE
EOF
log "ready in $((SECONDS - T0))s: $ORCHESTRATOR_IMAGE $RABBITMQ_IMAGE $TRAEFIK_IMAGE"
