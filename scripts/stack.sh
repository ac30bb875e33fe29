#!/usr/bin/env bash
# The production stack (compose.yaml) on this swarm.
#
#   scripts/stack.sh deploy        images, secrets, TLS, node labels, configs; `docker stack deploy`;
#                                  wait until every service is healthy (idempotent: a deploy with
#                                  nothing changed changes nothing)
#   scripts/stack.sh demo          deploy, then a sample site.created as Director publishes it,
#                                  the result, the page through the stack's Traefik, `stack ps`
#   scripts/stack.sh down          remove the stack and this deployment's site services; site
#                                  directories, the broker's volume and the secrets stay
#   scripts/stack.sh rotate NAME   a new version of the secret NAME (or `all`), then deploy
#   scripts/stack.sh pin-images    push this machine's director/base:latest and nginx:latest to
#                                  DEFAULT_IMAGES_REGISTRY and record their digests in
#                                  DEFAULT_IMAGES_FILE: the one way sites' default images change
#   scripts/stack.sh purge         after `down`: also the broker's volume, the secrets, the state dir
#   scripts/stack.sh status        services, tasks and health
#   scripts/stack.sh wait          until every service is healthy (HEALTHY_TIMEOUT)
#
# Settings (production defaults; `STACK_ENV=deploy/stack-local.env` runs it next to the local
# stack on one machine):
#   DIRECTOR_STACK   stack name; prefix of configs and secrets; ORCHESTRATOR_DEPLOYMENT  (director)
#   HTTP_PORT        Traefik's web entrypoint, published on every manager (host mode)   (80)
#   HTTPS_PORT       Traefik's websecure entrypoint, the same way                        (443)
#   TLS_ROOT         the certificate issuer's store, on the shared storage (every manager and
#                    site node mounts it at this path)                    (/srv/director/tls)
#   ACME_DIRECTORY_URL, ACME_CONTACT, EDGE_ADDRESSES, TLS_WILDCARD_FILES, HSTS_SECONDS: the
#                    issuer's settings (compose.yaml; docs/https.md)
#   AMQPS_PORT       RabbitMQ's TLS listener for Director, published (host mode)        (5671)
#   SITES_ROOT       site directories (same path on the host and in the orchestrator)  (/srv/director/sites)
#   SITES_NETWORK    the sites' overlay network                                         (director-sites)
#   SITES_REGISTRY   prefix of custom site images                                       (registry.director.local/sites)
#   REGISTRY_AUTH_FILE  a Docker client config.json holding the sites' registry's credential
#                    (`docker login`); only the entries of SITES_REGISTRY's and the default
#                    images' hosts go into the secret                  (root's ~/.docker/config.json)
#   DEFAULT_IMAGES_REGISTRY  where pin-images pushes the default and static images (registry.director.local)
#   DEFAULT_IMAGES_FILE  the pinned default images, ORCHESTRATOR_DEFAULT_IMAGE/_STATIC_IMAGE/
#                    _ALLOWED_DEFAULT_IMAGES lines, each <registry>/<name>:<tag>@sha256:<digest>;
#                    written by pin-images, read by deploy ($STACK_STATE_DIR/default-images.env)
#   SITES_DOMAIN_SUFFIXES  the domains sites may claim, comma-separated               (required)
#   RESERVED_DOMAINS the panel's own names, which no site may claim, comma-separated   (required)
#   AMQPS_HOSTNAMES  extra names in the broker's certificate (the name Director uses), comma-separated
#   STACK_STATE_DIR  TLS material and the copies of the passwords Director and operators need
#                    (root only)                                    (/var/lib/director-stack/$DIRECTOR_STACK)
#   EXTRA_COMPOSE    more stack files deployed on top of compose.yaml, space-separated:
#                    deploy/databases/compose.yaml runs the sites' database servers (its header)
#   SKIP_IMAGES=1    do not run scripts/images.sh (use the images of its last run)
#   HEALTHY_TIMEOUT  seconds to wait for every service to be healthy                   (180)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ -n "${STACK_ENV:-}" ]; then
    # Only KEY=value lines; values already in the environment win.
    while IFS='=' read -r key value; do
        [[ $key =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
        [ -n "${!key:-}" ] || export "$key=$value"
    done <"$STACK_ENV"
fi
STACK=${DIRECTOR_STACK:-director}
HTTP_PORT=${HTTP_PORT:-80}
HTTPS_PORT=${HTTPS_PORT:-443}
TLS_ROOT=${TLS_ROOT:-/srv/director/tls}
AMQPS_PORT=${AMQPS_PORT:-5671}
SITES_ROOT=${SITES_ROOT:-/srv/director/sites}
SITES_NETWORK=${SITES_NETWORK:-director-sites}
STATE_DIR=${STACK_STATE_DIR:-/var/lib/director-stack/$STACK}
CACHE_DIR=${STACK_CACHE_DIR:-/var/cache/director-stack}
HEALTHY_TIMEOUT=${HEALTHY_TIMEOUT:-180}
DEFAULT_IMAGES_REGISTRY=${DEFAULT_IMAGES_REGISTRY:-registry.director.local}
DEFAULT_IMAGES_FILE=${DEFAULT_IMAGES_FILE:-$STATE_DIR/default-images.env}
SERVICES=(rabbitmq traefik docker-proxy netguard collector orchestrator acme-http01)
# name:kept — `kept` secrets have a root-only copy in $STATE_DIR/secrets (Director and the
# observer's services need theirs, operators the admin's); the others never leave the swarm.
SECRETS=(rabbitmq_erlang_cookie: rabbitmq_admin_user:kept rabbitmq_admin_password:kept
         orchestrator_amqp_password: director_amqp_password:kept observer_amqp_password:kept
         collector_amqp_password:)

log() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
[[ $STACK =~ ^[a-z0-9][a-z0-9_-]{0,30}$ ]] || die "DIRECTOR_STACK '$STACK': lower-case letters, digits, - and _"
digest() { sha256sum "$@" | cut -c1-12; }

# ---------------------------------------------------------------- secrets
# Versions: <stack>_<name>_v<N>; the highest is in use.
secret_version() { # name -> highest version number, or nothing
    docker secret ls --format '{{.Name}}' --filter "name=${STACK}_$1_v" |
        sed -n "s/^${STACK}_$1_v\([0-9][0-9]*\)\$/\1/p" | sort -n | tail -n1
}
new_secret_value() { # name
    case $1 in
        rabbitmq_admin_user) printf 'admin' ;;
        rabbitmq_erlang_cookie) openssl rand -hex 32 | tr -d '\n' ;;
        *) openssl rand -base64 48 | tr -d '/+=\n' | cut -c1-40 | tr -d '\n' ;;
    esac
}
create_secret() { # name version
    local name=$1 version=$2 kept=$3 value
    value=$(new_secret_value "$name")
    printf '%s' "$value" | docker secret create --label "com.director.stack=$STACK" \
        "${STACK}_${name}_v$version" - >/dev/null
    if [ "$kept" = kept ]; then
        install -d -m 0700 "$STATE_DIR/secrets"
        (umask 077; printf '%s' "$value" >"$STATE_DIR/secrets/$name.tmp")
        mv -f "$STATE_DIR/secrets/$name.tmp" "$STATE_DIR/secrets/$name"
    fi
    log "secret ${STACK}_${name}_v$version created"
}
ensure_secrets() { # [name-to-rotate|all]
    local rotate=${1:-} entry name kept version var
    for entry in "${SECRETS[@]}"; do
        name=${entry%%:*} kept=${entry#*:}
        version=$(secret_version "$name")
        if [ -z "$version" ]; then
            version=1; create_secret "$name" "$version" "$kept"
        elif [ "$rotate" = "$name" ] || [ "$rotate" = all ] ||
             { [ "$kept" = kept ] && [ ! -s "$STATE_DIR/secrets/$name" ]; }; then
            # A kept secret whose copy is gone cannot be handed to Director any more: a new one.
            version=$((version + 1)); create_secret "$name" "$version" "$kept"
        fi
        var=$(tr '[:lower:]' '[:upper:]' <<<"$name")_V
        export "$var=$version"
    done
}
remove_unused_secrets() {
    local entry name version old
    for entry in "${SECRETS[@]}"; do
        name=${entry%%:*}
        version=$(secret_version "$name")
        docker secret ls --format '{{.Name}}' --filter "name=${STACK}_${name}_v" | while read -r old; do
            [ "$old" = "${STACK}_${name}_v$version" ] || docker secret rm "$old" >/dev/null 2>&1 || true
        done
    done
    docker secret ls --format '{{.Name}}' --filter "name=${STACK}_rabbitmq_tls_key_v" | while read -r old; do
        [ "$old" = "${STACK}_rabbitmq_tls_key_v$RABBITMQ_TLS_KEY_V" ] || docker secret rm "$old" >/dev/null 2>&1 || true
    done
    docker secret ls --format '{{.Name}}' --filter "name=${STACK}_registry_auth_v" | while read -r old; do
        [ "$old" = "${STACK}_registry_auth_v$REGISTRY_AUTH_V" ] || docker secret rm "$old" >/dev/null 2>&1 || true
    done
}

# ---------------------------------------------------------------- TLS
# A CA of this deployment signs the broker's certificate (names: rabbitmq for the orchestrator,
# localhost/127.0.0.1, this host, AMQPS_HOSTNAMES for Director). Kept in $STATE_DIR/tls: ca.pem
# is what Director verifies the broker with; ca.key (root only) signs the next certificate.
# Bring your own: put ca.pem, server.pem and server.key there.
TLS=$STATE_DIR/tls
tls_names() {
    local names=(DNS:rabbitmq DNS:localhost IP:127.0.0.1 "DNS:$(hostname)") n
    IFS=',' read -ra extra <<<"${AMQPS_HOSTNAMES:-}"
    for n in "${extra[@]}"; do [ -z "$n" ] || names+=("DNS:$n"); done
    local IFS=,; printf '%s' "${names[*]}"
}
tls_ok() {
    [ -s "$TLS/ca.pem" ] && [ -s "$TLS/server.pem" ] && [ -s "$TLS/server.key" ] || return 1
    openssl verify -CAfile "$TLS/ca.pem" "$TLS/server.pem" >/dev/null 2>&1 || return 1
    openssl x509 -noout -checkend 2592000 -in "$TLS/server.pem" >/dev/null 2>&1 || return 1
    # Generated here: its names must still be the wanted ones.
    [ ! -s "$TLS/names" ] || [ "$(cat "$TLS/names")" = "$(tls_names)" ]
}
ensure_tls() { # [force]
    install -d -m 0700 "$STATE_DIR" "$TLS"
    if [ "${1:-}" != force ] && tls_ok; then return; fi
    log "TLS: issuing the broker's certificate ($(tls_names))"
    (
        set -e; umask 077; cd "$TLS"
        if ! [ -s ca.key ] || ! openssl x509 -noout -checkend 31536000 -in ca.pem >/dev/null 2>&1; then
            openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 -subj "/CN=$STACK broker CA" \
                -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
                -keyout ca.key -out ca.pem
        fi
        openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=rabbitmq" -keyout server.key.new -out server.csr
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
            "$(tls_names)" >server.ext
        openssl x509 -req -sha256 -days 825 -in server.csr -CA ca.pem -CAkey ca.key \
            -set_serial "0x$(openssl rand -hex 16)" -extfile server.ext -out server.pem.new
        mv -f server.key.new server.key; mv -f server.pem.new server.pem
        chmod 0644 ca.pem server.pem
        tls_names >names; rm -f server.csr server.ext
    ) >"$TLS/openssl.log" 2>&1 || { cat "$TLS/openssl.log" >&2; die "could not issue the TLS certificates"; }
}
ensure_tls_key_secret() {
    # The key goes with its certificate: the secret is named by the certificate's digest.
    export RABBITMQ_TLS_KEY_V RABBITMQ_CERT_DIGEST RABBITMQ_CA_DIGEST
    RABBITMQ_CERT_DIGEST=$(digest "$TLS/server.pem")
    RABBITMQ_CA_DIGEST=$(digest "$TLS/ca.pem")
    RABBITMQ_TLS_KEY_V=$RABBITMQ_CERT_DIGEST
    docker secret inspect "${STACK}_rabbitmq_tls_key_v$RABBITMQ_TLS_KEY_V" >/dev/null 2>&1 ||
        docker secret create --label "com.director.stack=$STACK" "${STACK}_rabbitmq_tls_key_v$RABBITMQ_TLS_KEY_V" \
            "$TLS/server.key" >/dev/null
}
ensure_registry_auth_secret() {
    # The orchestrator's Docker client configuration: the registries' entries of REGISTRY_AUTH_FILE
    # (none: an empty one, and the registry refuses the orchestrator). Named by its digest.
    local content
    content=$(python3 - "${REGISTRY_AUTH_FILE:-${DOCKER_CONFIG:-$HOME/.docker}/config.json}" \
        "${SITES_REGISTRY:-registry.director.local/sites}" "$ORCHESTRATOR_DEFAULT_IMAGE" "$ORCHESTRATOR_STATIC_IMAGE" \
        ${ORCHESTRATOR_ALLOWED_DEFAULT_IMAGES//,/ } <<'PY'
import json, sys
path, *registries = sys.argv[1:]
try:
    auths = json.load(open(path)).get("auths") or {}
except (OSError, ValueError):
    auths = {}
hosts = {registry.split("/")[0] for registry in registries}
print(json.dumps({"auths": {host: auths[host] for host in sorted(hosts) if host in auths}}, sort_keys=True))
PY
)
    export REGISTRY_AUTH_V
    REGISTRY_AUTH_V=$(printf '%s' "$content" | sha256sum | cut -c1-12)
    docker secret inspect "${STACK}_registry_auth_v$REGISTRY_AUTH_V" >/dev/null 2>&1 ||
        printf '%s' "$content" | docker secret create --label "com.director.stack=$STACK" \
            "${STACK}_registry_auth_v$REGISTRY_AUTH_V" - >/dev/null
}

# ---------------------------------------------------------------- default images, pinned
# Sites run the default and static images by digest (docs/security.md#images): a tag moved in the
# registry changes nothing that runs. pin-images is the deliberate step that changes them; deploy
# only reads what it recorded.
PINNED_KEYS=(ORCHESTRATOR_DEFAULT_IMAGE ORCHESTRATOR_ALLOWED_DEFAULT_IMAGES ORCHESTRATOR_STATIC_IMAGE)
pin_images() {
    local image target digest pinned=()
    for image in director/base:latest nginx:latest; do
        target=$DEFAULT_IMAGES_REGISTRY/$image
        docker tag "$image" "$target" || die "no image $image on this machine"
        digest=$(docker push "$target" | sed -n 's/.* digest: \(sha256:[0-9a-f]\{64\}\) .*/\1/p')
        [ -n "$digest" ] || die "could not push $target (docker login ${DEFAULT_IMAGES_REGISTRY%%/*})"
        pinned+=("$target@$digest")
    done
    install -d -m 0700 "$(dirname "$DEFAULT_IMAGES_FILE")"
    printf '%s\n' "ORCHESTRATOR_DEFAULT_IMAGE=${pinned[0]}" "ORCHESTRATOR_ALLOWED_DEFAULT_IMAGES=${pinned[0]}" \
        "ORCHESTRATOR_STATIC_IMAGE=${pinned[1]}" >"$DEFAULT_IMAGES_FILE.tmp"
    mv -f "$DEFAULT_IMAGES_FILE.tmp" "$DEFAULT_IMAGES_FILE"
    log "default images pinned in $DEFAULT_IMAGES_FILE: ${pinned[*]} (deploy to run them)"
}
load_pinned_images() {
    local key value
    [ -s "$DEFAULT_IMAGES_FILE" ] ||
        die "no pinned default images in $DEFAULT_IMAGES_FILE: scripts/stack.sh pin-images pushes them and records their digests"
    while IFS='=' read -r key value; do
        [[ " ${PINNED_KEYS[*]} " == *" $key "* ]] && export "$key=$value"
    done <"$DEFAULT_IMAGES_FILE"
    for key in "${PINNED_KEYS[@]}"; do
        [ -n "${!key:-}" ] || die "$DEFAULT_IMAGES_FILE does not set $key"
    done
}

# ---------------------------------------------------------------- deploy
ensure_node_labels() {
    local nodes self label
    self=$(docker info -f '{{.Swarm.NodeID}}')
    nodes=$(docker node ls -q | wc -l)
    for label in director.broker director.sites; do
        if docker node ls -q | xargs docker node inspect -f "{{index .Spec.Labels \"$label\"}}" | grep -qx true; then
            continue
        fi
        [ "$nodes" = 1 ] || die "label the node that holds the broker's volume / the sites root: docker node update --label-add $label=true NODE"
        log "node: labelling this node $label=true"
        docker node update --label-add "$label=true" "$self" >/dev/null
    done
}

render_configs() {
    install -d -m 0700 "$STATE_DIR"
    # Traefik: this deployment's network, and only this deployment's sites (the label the
    # orchestrator writes on every site service).
    local static=$STATE_DIR/traefik.yml
    sed -e "s|^\(    network:\) .*\$|\1 $SITES_NETWORK|" \
        -e "/^    exposedByDefault: false\$/a\\    constraints: \"Label(\`com.director.deployment\`, \`$STACK\`)\"" \
        deploy/traefik/traefik.yml >"$static.tmp"
    grep -qxF "    network: $SITES_NETWORK" "$static.tmp" && grep -q "com.director.deployment" "$static.tmp" ||
        die "deploy/traefik/traefik.yml: no 'network:' / 'exposedByDefault: false' line under providers.swarm"
    mv -f "$static.tmp" "$static"
    export TRAEFIK_STATIC_FILE=$static
    export TRAEFIK_STATIC_DIGEST RABBITMQ_CONF_DIGEST RABBITMQ_DEFINITIONS_DIGEST
    TRAEFIK_STATIC_DIGEST=$(digest "$static")
    # Traefik's file provider reads a directory of the shared storage (watched: no redeploy for a
    # change): dynamic.yml goes there as base.yml, beside the certificates the issuer writes.
    install -d -m 0755 "$TLS_ROOT" "$TLS_ROOT/traefik" "$TLS_ROOT/http01"
    install -d -m 0700 "$TLS_ROOT/state"
    if ! cmp -s deploy/traefik/dynamic.yml "$TLS_ROOT/traefik/base.yml"; then
        install -m 0644 deploy/traefik/dynamic.yml "$TLS_ROOT/traefik/.base.yml.tmp"
        mv -f "$TLS_ROOT/traefik/.base.yml.tmp" "$TLS_ROOT/traefik/base.yml"
    fi
    RABBITMQ_CONF_DIGEST=$(digest deploy/rabbitmq/rabbitmq.conf)
    RABBITMQ_DEFINITIONS_DIGEST=$(digest deploy/rabbitmq/definitions.json)
    export POSTGRES_HBA_DIGEST POSTGRES_INIT_DIGEST MARIADB_INIT_DIGEST
    POSTGRES_HBA_DIGEST=$(digest deploy/databases/pg_hba.conf)
    POSTGRES_INIT_DIGEST=$(digest deploy/databases/postgres-init.sh)
    MARIADB_INIT_DIGEST=$(digest deploy/databases/mariadb-init.sh)
}

# Healthy: no update in progress, and each service's running containers are exactly its desired
# tasks, of its current spec, healthy (scripts/stack_health.py).
unhealthy_services() {
    python3 scripts/stack_health.py "$STACK" "${SERVICES[@]}" || echo "docker:not-answering"
}
wait_healthy() {
    local t0=$SECONDS end=$((SECONDS + HEALTHY_TIMEOUT)) waiting last=""
    while waiting=$(unhealthy_services) && [ -n "$waiting" ]; do
        if [ "$SECONDS" -ge "$end" ]; then
            docker stack ps --no-trunc "$STACK" | head -n 20 >&2
            die "not healthy within ${HEALTHY_TIMEOUT}s: $(tr '\n' ' ' <<<"$waiting")"
        fi
        [ "$waiting" = "$last" ] || log "waiting for: $(tr '\n' ' ' <<<"$waiting")"
        last=$waiting
        sleep 1
    done
    log "every service healthy (waited $((SECONDS - t0))s)"
}

deploy() {
    local t0=$SECONDS
    docker info -f '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null | grep -qx 'active true' ||
        die "this machine is not a swarm manager (make up initialises one)"
    if [ "${SKIP_IMAGES:-0}" != 1 ]; then bash scripts/images.sh; fi
    [ -s "$CACHE_DIR/images.env" ] || die "no images built yet (scripts/images.sh)"
    set -a; . "$CACHE_DIR/images.env"; set +a
    export DIRECTOR_STACK=$STACK HTTP_PORT HTTPS_PORT AMQPS_PORT SITES_ROOT SITES_NETWORK TLS_ROOT STACK_STATE_DIR=$STATE_DIR
    DOCKER_GID=$(stat -c %g /var/run/docker.sock); export DOCKER_GID
    ensure_node_labels
    install -d -m 0755 "$SITES_ROOT"
    # Its own mount, nosuid and nodev (as scripts/stack-up.sh does for the local stack's): every
    # site directory bind-mounted into a task inherits both. A real mount with both is left alone.
    if ! findmnt -n -o OPTIONS --mountpoint "$SITES_ROOT" 2>/dev/null | grep -Eq 'nosuid.*nodev|nodev.*nosuid'; then
        mountpoint -q "$SITES_ROOT" || mount --bind "$SITES_ROOT" "$SITES_ROOT"
        mount -o remount,bind,nosuid,nodev "$SITES_ROOT"
        log "sites root: $SITES_ROOT mounted nosuid,nodev"
    fi
    load_pinned_images
    ensure_tls "${FORCE_TLS:-}"
    ensure_tls_key_secret
    ensure_registry_auth_secret
    ensure_secrets "${ROTATE:-}"
    render_configs
    log "deploying stack $STACK (web :$HTTP_PORT, websecure :$HTTPS_PORT, amqps :$AMQPS_PORT, network $SITES_NETWORK, sites $SITES_ROOT)"
    local t1=$SECONDS
    local out files=(-c compose.yaml) extra
    for extra in ${EXTRA_COMPOSE:-}; do files+=(-c "$extra"); done
    out=$(docker stack deploy --prune --resolve-image never "${files[@]}" "$STACK" 2>&1) ||
        { printf '%s\n' "$out" >&2; die "docker stack deploy failed"; }
    grep -v -e '^Since --detach=false' -e '^In a future release' <<<"$out" | sed 's/^/[stack]   /' || true
    wait_healthy
    remove_unused_secrets
    log "deployed in $((SECONDS - t0))s (stack deploy -> healthy: $((SECONDS - t1))s)"
}

# ---------------------------------------------------------------- down, purge
down() {
    local svc
    if docker stack ls --format '{{.Name}}' | grep -qx "$STACK"; then
        log "removing stack $STACK"
        # Its network goes once the site services below are gone too (the loop at the end).
        docker stack rm "$STACK" >/dev/null 2>&1 || true
    fi
    # The sites this deployment made: without their orchestrator and Traefik nothing serves or
    # manages them (Director's next event recreates one). Their directories stay.
    local label=com.director.deployment=$STACK
    svc=$(docker service ls -q --filter label=com.director.managed-by=orchestrator --filter "label=$label")
    if [ -n "$svc" ]; then
        log "removing $(wc -w <<<"$svc") site service(s) of deployment $STACK"
        docker service rm $svc >/dev/null
    fi
    svc=$(docker ps -aq --filter label=com.director.managed-by=orchestrator --filter "label=$label")
    [ -z "$svc" ] || docker rm -f $svc >/dev/null
    local end=$((SECONDS + 90))
    while docker ps -aq --filter "label=com.docker.stack.namespace=$STACK" | grep -q . ||
          docker network inspect "$SITES_NETWORK" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || die "stack $STACK not gone within 90s"
        # A network the stack could not remove while site tasks were still attached.
        if ! docker ps -aq --filter "label=com.docker.stack.namespace=$STACK" | grep -q .; then
            docker network rm "$SITES_NETWORK" >/dev/null 2>&1 || true
        fi
        sleep 1
    done
    log "stack $STACK removed; kept: $SITES_ROOT, volume ${STACK}_rabbitmq-data, secrets ${STACK}_*, $STATE_DIR"
}
purge() {
    down
    docker volume rm "${STACK}_rabbitmq-data" >/dev/null 2>&1 && log "volume ${STACK}_rabbitmq-data removed" || true
    local s
    for s in $(docker secret ls -q --filter "label=com.director.stack=$STACK"); do docker secret rm "$s" >/dev/null; done
    rm -rf "$STATE_DIR"
    log "purged: secrets, broker volume and $STATE_DIR of $STACK (site directories under $SITES_ROOT kept)"
}

# ---------------------------------------------------------------- demo, status
status() {
    docker stack services "$STACK"
    echo
    docker stack ps --filter desired-state=running --format 'table {{.Name}}\t{{.Image}}\t{{.Node}}\t{{.CurrentState}}\t{{.Ports}}' "$STACK"
    echo
    docker ps --filter "label=com.docker.stack.namespace=$STACK" --format 'table {{.Names}}\t{{.Status}}'
}
demo() {
    local site_id=${DEMO_SITE_ID:-40000} domain=${DEMO_DOMAIN:-demo.$STACK.example.com} dir
    deploy
    dir=$SITES_ROOT/site_$(printf '%04d' "$site_id")
    log "the site owner's files: $dir/{run.sh,public/index.html}"
    mkdir -p "$dir/public" "$dir/private"
    printf '<!doctype html><title>Hello</title><h1>Hello from site %s, deployed by an event through stack %s</h1>\n' \
        "$site_id" "$STACK" >"$dir/public/index.html"
    printf '#!/bin/sh\necho "serving /site/public on port $PORT"\nexec httpd -f -p "$PORT" -h /site/public\n' >"$dir/run.sh"
    log "publishing site.created for site $site_id ($domain) as Director to amqps://127.0.0.1:$AMQPS_PORT"
    local t0=$SECONDS
    DEMO_CA_FILE=$TLS/ca.pem \
    DEMO_DIRECTOR_PASSWORD_FILE=$STATE_DIR/secrets/director_amqp_password \
        .venv/bin/python scripts/demo_publish.py "$site_id" "$domain" "amqps://director@127.0.0.1:$AMQPS_PORT/"
    log "event -> site.deployed: $((SECONDS - t0))s"
    log "GET http://127.0.0.1:$HTTP_PORT/ with Host: $domain (through the stack's Traefik)"
    curl -fsS -m 5 -H "Host: $domain" "http://127.0.0.1:$HTTP_PORT/" || die "the site is not served through Traefik"
    echo
    status
    cat <<EOF

Stack $STACK is up: web http://127.0.0.1:$HTTP_PORT (Host: $domain), Director's broker
amqps://127.0.0.1:$AMQPS_PORT (CA $TLS/ca.pem, password $STATE_DIR/secrets/director_amqp_password).
Remove it with: make stack-down
EOF
}

case ${1:-} in
    deploy) deploy ;;
    demo) demo ;;
    down) down ;;
    purge) purge ;;
    pin-images) pin_images ;;
    status) status ;;
    wait) wait_healthy ;;
    rotate)
        [[ " all rabbitmq_tls_key ${SECRETS[*]%%:*} " == *" ${2:-?} "* ]] || die "rotate what? one of: all rabbitmq_tls_key $(printf '%s ' "${SECRETS[@]%%:*}")"
        if [ "$2" = rabbitmq_tls_key ]; then FORCE_TLS=force deploy; else ROTATE=$2 deploy; fi ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
