#!/usr/bin/env bash
# Cache the official AsyncAPI 3.0.0 JSON Schema (from the npm package @asyncapi/specs) for
# tests/unit/test_asyncapi.py, and print its path. Idempotent: a cached file with the pinned
# checksum is used as it is, without touching the network.
#
# The bundled schemas/3.0.0.json is self-contained: every definition it $refs (bindings included)
# is embedded under `definitions` with its own $id.
#
# Env:
#   STACK_CACHE_DIR   download cache   (/var/cache/director-stack)
set -euo pipefail

VERSION=6.11.1
TARBALL_SHA256=01af8744dc33c0c7eb2e908f6a955319ee58b70ecadc9387d1aeb16c0cd28928
SCHEMA_SHA256=d4571a420e6ffb7fcc7066c95a6db1202f299a3c51daa103d0706bf30f95e626
URL=https://registry.npmjs.org/@asyncapi/specs/-/specs-$VERSION.tgz
CACHE_DIR=${STACK_CACHE_DIR:-/var/cache/director-stack}
TARGET=$CACHE_DIR/asyncapi/3.0.0.json

die() { echo "fetch-asyncapi-schema: $*" >&2; exit 1; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f $TARGET && $(sha256 "$TARGET") == "$SCHEMA_SHA256" ]]; then
    echo "$TARGET"
    exit 0
fi

mkdir -p "$CACHE_DIR/asyncapi"
tmp=$(mktemp -d "$CACHE_DIR/asyncapi/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

curl -fsSL --retry 3 -o "$tmp/specs.tgz" "$URL" || die "download of $URL failed"
[[ $(sha256 "$tmp/specs.tgz") == "$TARBALL_SHA256" ]] || die "$URL does not have the pinned sha256"
tar -xzf "$tmp/specs.tgz" -C "$tmp" package/schemas/3.0.0.json || die "no schemas/3.0.0.json in $URL"
[[ $(sha256 "$tmp/package/schemas/3.0.0.json") == "$SCHEMA_SHA256" ]] || die "schemas/3.0.0.json does not have the pinned sha256"
# Atomic: a concurrent run or an interrupted one never leaves a partial file at $TARGET.
mv -f "$tmp/package/schemas/3.0.0.json" "$TARGET"
echo "$TARGET"
