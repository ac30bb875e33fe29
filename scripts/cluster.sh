#!/usr/bin/env bash
# The test cluster: extra Docker engines on this machine, joined to the local stack's swarm as
# workers (scripts/stack-up.sh makes the manager, advertising on the bridge $BRIDGE).
#
#   cluster.sh up N       N workers w1..wN (idempotent: starts what is missing, heals a killed one)
#   cluster.sh down       remove every worker this script started, and what it added for them
#   cluster.sh kill NODE  lose a node at once (a power cut): SIGKILL its engine, containerd and every
#                         process of its containers; the manager sees it go down. `up` brings it back.
#   cluster.sh status     the workers, their engines and the swarm's view of them
#
# A worker wN is: a network namespace director-wN with a veth pair to $BRIDGE ($PREFIX.(10+N)/24, a
# subnet that exists only on this machine), and a dockerd started in it with nsenter (not `ip netns
# exec`, which remounts /sys: the engine then finds no cgroups) and its own UTS namespace (its node's
# host name is director-wN), data root, exec root, socket, pid file and cgroup parent (so its
# containers can be found and killed), without a default bridge, with Docker's own iptables rules in
# its namespace: its sites' way out (docker_gwbridge) is masqueraded as on a production node, and
# the network guard of a worker runs in that namespace (tests/cluster). Every engine sees the
# host's file system: the sites root is the same path on every node, as shared storage gives in
# production. Images come from the manager (`docker save | docker load`). Nothing here touches a
# process, namespace, interface or rule it did not make: processes are found by pid file, checked
# against their command line, or by membership of the worker's own namespace or cgroup.
#
# Env: CLUSTER_BRIDGE (director0), CLUSTER_PREFIX (198.18.213), CLUSTER_IMAGES (extra images to
#      copy to workers, space-separated), SITE_NODE_LABEL (director.sites): the label put on the
#      workers, and on the manager too when it is another one (tests/cluster uses its own, so the
#      sites of tests running beside it never land on a worker it kills; `down` takes it off again)
set -euo pipefail

BRIDGE=${CLUSTER_BRIDGE:-director0}
PREFIX=${CLUSTER_PREFIX:-198.18.213}
MANAGER_ADDR=$PREFIX.1
SITE_NODE_LABEL=${SITE_NODE_LABEL:-director.sites}
REGISTRY_ADDR=${REGISTRY_ADDR:-$MANAGER_ADDR:5000}
# As builds and terminals name them; loaded rather than pulled, to start quickly. (Sites run the
# default images pinned by digest, which `docker load` does not record: a worker pulls those from
# the local registry at its first task.)
IMAGES="director/base:latest nginx:latest $REGISTRY_ADDR/director/base:latest $REGISTRY_ADDR/nginx:latest ${CLUSTER_IMAGES:-}"
STATE=/run/director-cluster        # sockets, pid files, node ids
DATA=/var/lib/director-cluster     # data roots
LOGS=/var/log/director-cluster
RULE=(DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -m comment --comment director-cluster -j ACCEPT)

log() { printf '[cluster] %s\n' "$*"; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

wait_for() { # timeout "$@"
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.5
    done
}

netns() { echo "director-$1"; }
sock() { echo "$STATE/$1.sock"; }
exec_root() { echo "/run/dc-$1"; }   # short: containerd's socket paths live under it
cgroup_parent() { echo "director-$1"; }
self_id() { docker info --format "{{.Swarm.NodeID}}"; }
wdocker() { local node=$1; shift; docker -H "unix://$(sock "$node")" "$@"; }
engine_up() { wdocker "$1" info >/dev/null 2>&1; }

# The pid in the worker's pid file, only if that process is our dockerd for this worker.
engine_pid() {
    local pid
    pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "--host unix://$(sock "$1") " || return 1
    echo "$pid"
}

# The worker's cgroup parent in every hierarchy. Relative, so each v1 controller puts it under the
# engine's own cgroup there: /sys/fs/cgroup/cpu/director-wN, but under the memory cgroup of the
# job that started the engine (/sys/fs/cgroup/memory/<that cgroup>/director-wN) when it had one.
cgroup_dirs() {
    find /sys/fs/cgroup -maxdepth 6 -type d -name "$(cgroup_parent "$1")" -prune -print 2>/dev/null || true
}

# Processes of the worker: in its network namespace (dockerd, containerd, shims) or in its cgroup
# (its containers, which have network namespaces of their own).
node_pids() {
    local node=$1 f
    ip netns pids "$(netns "$node")" 2>/dev/null || true
    for f in $(cgroup_dirs "$node"); do
        find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null || true
    done
}

kill_node_processes() { # node signal
    local pids
    pids=$(node_pids "$1" | sort -u)
    [ -z "$pids" ] || kill "-$2" $pids 2>/dev/null || true
}

workers() { # every worker this script has state for, or a namespace of
    { ls "$STATE" 2>/dev/null | sed -n 's/^\(w[0-9]*\)\.\(pid\|node\)$/\1/p'
      ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^director-\(w[0-9]*\)$/\1/p'
      ls "$DATA" 2>/dev/null | grep -x 'w[0-9]*'; } | sort -u
}

# ------------------------------------------------------------------------------------------- up

manager_checks() {
    [ "$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null)" = "active true" ] ||
        die "the local swarm manager is not up: run make up first"
    local addr
    addr=$(docker info --format '{{.Swarm.NodeAddr}}')
    [ "$addr" = "$MANAGER_ADDR" ] || die "the swarm advertises $addr, not $MANAGER_ADDR on $BRIDGE: run make up (scripts/stack-up.sh) first"
    ip link show "$BRIDGE" >/dev/null 2>&1 || die "no bridge $BRIDGE: run make up first"
}

net_up() { # node index
    local node=$1 i=$2 ns host peer
    ns=$(netns "$node"); host="dc${node}h"; peer="dc${node}n"
    [ -e "/var/run/netns/$ns" ] || { log "$node: network namespace $ns"; ip netns add "$ns"; }
    if ! ip link show "$host" >/dev/null 2>&1; then
        ip link add "$host" type veth peer name "$peer"
        ip link set "$peer" netns "$ns"
        ip -n "$ns" link set "$peer" name eth0
    fi
    ip link set "$host" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" -4 addr show dev eth0 | grep -qF " $PREFIX.$((10 + i))/24 " ||
        ip -n "$ns" addr add "$PREFIX.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    # A manager keeps the address its swarm was made with in Raft (make up's re-forming of a swarm
    # advertised on 127.0.0.1 changes what it advertises, not its Raft member address), and workers
    # dial that address for the control plane (2377) and the gossip bootstrap (7946). Inside the
    # worker's own namespace, 127.0.0.1 on those ports is sent to the manager on the bridge; nothing
    # outside the namespace changes. (A swarm made by make up from scratch needs none of it.)
    nsenter --net="/var/run/netns/$ns" sh -c "
        sysctl -qw net.ipv4.conf.all.route_localnet=1
        for port in 2377 7946; do
            iptables -t nat -C OUTPUT -d 127.0.0.1/32 -p tcp --dport \$port -j DNAT --to-destination $MANAGER_ADDR:\$port 2>/dev/null ||
                iptables -t nat -A OUTPUT -d 127.0.0.1/32 -p tcp --dport \$port -j DNAT --to-destination $MANAGER_ADDR:\$port
        done
        iptables -t nat -C POSTROUTING -s 127.0.0.1/32 -d $MANAGER_ADDR/32 -j SNAT --to-source $PREFIX.$((10 + i)) 2>/dev/null ||
            iptables -t nat -A POSTROUTING -s 127.0.0.1/32 -d $MANAGER_ADDR/32 -j SNAT --to-source $PREFIX.$((10 + i))"
    # Bridged frames pass the FORWARD chain (br_netfilter), whose policy Docker sets to DROP: the
    # workers' VXLAN and gossip between bridge ports must pass. Only between this bridge's ports.
    iptables -C "${RULE[@]}" 2>/dev/null || iptables -I "${RULE[@]}"
}

engine_start() { # node
    local node=$1 ns
    ns=$(netns "$node")
    if engine_pid "$node" >/dev/null && wait_for 30 engine_up "$node"; then
        return 0
    fi
    # A killed engine's leftovers (its containerd, shims, containers) go before a fresh start.
    kill_node_processes "$node" KILL
    mkdir -p "$STATE" "$DATA/$node" "$LOGS" "$(exec_root "$node")"
    # The manager's daemon settings (no-new-privileges for every container, the local registry
    # declared insecure: workers pull custom site images from it, log options) without
    # what names this engine's own places.
    python3 - /etc/docker/daemon.json "$STATE/$node.json" <<'PY'
import json, os, sys
src, dst = sys.argv[1:]
config = json.load(open(src)) if os.path.exists(src) and os.path.getsize(src) else {}
for key in ("hosts", "data-root", "exec-root", "pidfile", "bridge", "iptables", "cgroup-parent", "bip"):
    config.pop(key, None)
json.dump(config, open(dst, "w"))
PY
    log "$node: starting dockerd in $ns ($PREFIX.$((10 + ${node#w})))"
    setsid nsenter --net="/var/run/netns/$ns" unshare --uts sh -c 'hostname "$0" && exec "$@"' "director-$node" \
        dockerd --config-file "$STATE/$node.json" --data-root "$DATA/$node" --exec-root "$(exec_root "$node")" \
        --host "unix://$(sock "$node")" --pidfile "$STATE/$node.pid" --cgroup-parent "$(cgroup_parent "$node")" \
        --bridge=none \
        >>"$LOGS/$node.log" 2>&1 </dev/null &
    wait_for 60 engine_up "$node" || { tail -n 20 "$LOGS/$node.log" >&2; die "$node: dockerd did not come up (log: $LOGS/$node.log)"; }
}

swarm_state() { wdocker "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

join() { # node index
    local node=$1 i=$2 token id
    # A restarted engine rejoins by itself (its swarm state is in its data root): give it the time.
    wait_for 30 bash -c "[ \"\$(docker -H unix://$(sock "$node") info --format '{{.Swarm.LocalNodeState}}')\" != pending ]" || true
    if [ "$(swarm_state "$node")" != active ]; then
        [ "$(swarm_state "$node")" = inactive ] || wdocker "$node" swarm leave --force >/dev/null 2>&1 || true
        log "$node: joining the swarm at $MANAGER_ADDR:2377"
        token=$(docker swarm join-token -q worker)
        wdocker "$node" swarm join --token "$token" --advertise-addr "$PREFIX.$((10 + i))" \
            --listen-addr "$PREFIX.$((10 + i)):2377" "$MANAGER_ADDR:2377" >/dev/null
    fi
    id=$(wdocker "$node" info --format '{{.Swarm.NodeID}}')
    echo "$id" >"$STATE/$node.node"
    wait_for 60 bash -c "[ \"\$(docker node inspect -f '{{.Status.State}}' $id)\" = ready ]" ||
        die "$node: node $id not ready in the swarm"
    docker node update --label-add "$SITE_NODE_LABEL=true" --label-add "director.node=$node" "$id" >/dev/null
}

images() { # node: the manager's images, where the worker's differ
    local node=$1 image want have
    for image in $IMAGES; do
        want=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) || { log "$node: no $image on the manager, skipped"; continue; }
        have=$(wdocker "$node" image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
        if [ "$want" != "$have" ]; then
            log "$node: loading $image"
            docker save "$image" | wdocker "$node" load >/dev/null
        fi
    done
}

up() {
    local n=${1:-2} i node
    [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "usage: cluster.sh up N (1-99)"
    manager_checks
    if [ "$(docker node inspect -f "{{index .Spec.Labels \"$SITE_NODE_LABEL\"}}" "$(self_id)")" != true ]; then
        docker node update --label-add "$SITE_NODE_LABEL=true" "$(self_id)" >/dev/null
        mkdir -p "$STATE" && echo "$SITE_NODE_LABEL" >>"$STATE/manager-labels"
    fi
    for i in $(seq 1 "$n"); do
        node=w$i
        net_up "$node" "$i"
        engine_start "$node"
        join "$node" "$i"
        images "$node"
    done
    log "up: $(docker node ls --format '{{.Hostname}}={{.Status}}/{{.Availability}}' | tr '\n' ' ')"
}

# ------------------------------------------------------------------------------------------- down

unmount_under() { # dir: every mount at or below it (dockerd mounts its data root on itself), deepest first
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

remove_node() { # node
    local node=$1 pid id ns
    ns=$(netns "$node")
    if engine_up "$node"; then
        wdocker "$node" swarm leave --force >/dev/null 2>&1 || true
    fi
    if pid=$(engine_pid "$node"); then
        log "$node: stopping dockerd ($pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 30 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    kill_node_processes "$node" KILL
    wait_for 10 bash -c "[ -z \"\$(ip netns pids $ns 2>/dev/null)\" ]" || true
    local f
    for f in $(cgroup_dirs "$node"); do
        find "$f" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    unmount_under "$(exec_root "$node")"
    unmount_under "$DATA/$node"
    if id=$(cat "$STATE/$node.node" 2>/dev/null) && [ -n "$id" ]; then
        docker node rm --force "$id" >/dev/null 2>&1 || true
    fi
    [ ! -e "/var/run/netns/$ns" ] || ip netns del "$ns"
    ip link del "dc${node}h" 2>/dev/null || true   # gone with the namespace, normally
    rm -rf "$DATA/$node" "$(exec_root "$node")" "$STATE/$node".*
    log "$node: removed"
}

down() {
    local node
    for node in $(workers); do remove_node "$node"; done
    local label
    for label in $(cat "$STATE/manager-labels" 2>/dev/null); do
        docker node update --label-rm "$label" "$(self_id)" >/dev/null 2>&1 || true
    done
    rm -f "$STATE/manager-labels"
    while iptables -C "${RULE[@]}" 2>/dev/null; do iptables -D "${RULE[@]}"; done
    rmdir "$STATE" "$DATA" 2>/dev/null || true
    log "down"
}

# ------------------------------------------------------------------------------------------- kill

kill_node() { # node
    local node=$1 pid
    [[ "$node" =~ ^w[0-9]+$ ]] || die "usage: cluster.sh kill wN"
    pid=$(engine_pid "$node") || die "$node: no engine of ours is running"
    kill -KILL "$pid"
    kill_node_processes "$node" KILL
    log "$node: killed (engine $pid, its containerd and containers)"
}

status() {
    local node
    for node in $(workers); do
        printf '%s pid=%s engine=%s\n' "$node" "$(engine_pid "$node" || echo -)" "$(engine_up "$node" && echo up || echo down)"
    done
    docker node ls
}

case ${1:-} in
    up) up "${2:-2}" ;;
    down) down ;;
    kill) kill_node "${2:-}" ;;
    status) status ;;
    *) die "usage: cluster.sh up N | down | kill wN | status" ;;
esac
