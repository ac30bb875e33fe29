#!/usr/bin/env bash
# The local stack's site database servers (stack-up.sh section 12): Debian's PostgreSQL 15 and
# MariaDB 10.11, each with an admin role of the orchestrator's own (not a superuser), listening on
# loopback and on the swarm's bridge address only. Idempotent: safe to re-run, fast when all is up.
#
# Who reaches them:
# - the orchestrator (on this host) as its admin, from loopback;
# - site tasks of this node through docker_gwbridge (the network guard opens the node to them for
#   these two ports alone: orchestrator/netguard/rules.py) and of the test cluster's workers through the bridge;
# - a site's role only into the database of its own name (pg_hba `samerole`; MariaDB grants).
# The admin passwords are made once, random, in $DB_ETC (root only); production keeps them in
# Docker secrets (compose.yaml).
#
# Env: CLUSTER_BRIDGE, CLUSTER_PREFIX as stack-up.sh; DATABASES_ETC (/etc/director-stack/databases).
set -euo pipefail

PREFIX=${CLUSTER_PREFIX:-198.18.213}
ADDR=$PREFIX.1
DB_ETC=${DATABASES_ETC:-/etc/director-stack/databases}
PG_VERSION=15
PG_CONF=/etc/postgresql/$PG_VERSION/main
MYSQL_CONF=/etc/mysql/mariadb.conf.d/60-director.cnf
ADMIN=director

log() { printf '[stack-up] %s\n' "$*"; }
die() { printf '[stack-up] ERROR: %s\n' "$*" >&2; exit 1; }
wait_for() { # timeout cmd...
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do [ "$SECONDS" -lt "$end" ] || return 1; sleep 0.5; done
}
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

missing=()
for p in postgresql postgresql-client mariadb-server mariadb-client; do pkg_installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    log "databases: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >/var/log/director-databases-apt.log 2>&1 || {
        tail -n 20 /var/log/director-databases-apt.log >&2; die "apt-get install failed (log: /var/log/director-databases-apt.log)"; }
fi

install -d -m 0700 "$DB_ETC"
for kind in postgres mysql; do
    [ -s "$DB_ETC/$kind.password" ] && continue
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$DB_ETC/$kind.password")
    log "databases: made the $kind admin password ($DB_ETC/$kind.password)"
done
PG_PASSWORD=$(cat "$DB_ETC/postgres.password")
MYSQL_PASSWORD=$(cat "$DB_ETC/mysql.password")
# Where site tasks come from: this node's docker_gwbridge (made by the swarm) and the bridge.
GWBRIDGE=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' docker_gwbridge 2>/dev/null || true)
[ -n "$GWBRIDGE" ] || die "no docker_gwbridge: the swarm (stack-up.sh section 4) comes first"

# A file written only when its content changed; prints "changed" then.
put() { # dest mode content
    [ "$(cat "$1" 2>/dev/null)" = "$3" ] && return 0
    printf '%s\n' "$3" >"$1.tmp" && chmod "$2" "$1.tmp" && mv -f "$1.tmp" "$1" && echo changed
}

# ---------------------------------------------------------------- PostgreSQL
pg_changed=$(
    put "$PG_CONF/conf.d/director.conf" 0644 "# Managed by scripts/stack-databases.sh
listen_addresses = '127.0.0.1,$ADDR'
password_encryption = scram-sha-256
max_connections = 300"
    put "$PG_CONF/pg_hba.conf" 0640 "# Managed by scripts/stack-databases.sh. A site's role reaches only the database named as
# the group role it belongs to (samerole); the orchestrator's admin only from loopback.
local   all        postgres                   peer
host    all        $ADMIN     127.0.0.1/32     scram-sha-256
host    samerole   all        127.0.0.1/32     scram-sha-256
host    samerole   all        $PREFIX.0/24     scram-sha-256
host    samerole   all        $GWBRIDGE        scram-sha-256"
)
chown postgres:postgres "$PG_CONF/pg_hba.conf"
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 && pg_isready -q -h "$ADDR" -p 5432; }
if [ -n "$pg_changed" ] && pg_isready -q -h 127.0.0.1 -p 5432; then
    log "databases: PostgreSQL's configuration changed, restarting"
    pg_ctlcluster "$PG_VERSION" main restart
elif ! pg_up; then
    log "databases: starting PostgreSQL $PG_VERSION"
    pg_ctlcluster "$PG_VERSION" main start 2>/dev/null || pg_ctlcluster "$PG_VERSION" main restart
fi
wait_for 30 pg_up || die "PostgreSQL is not answering on 127.0.0.1:5432 and $ADDR:5432 (/var/log/postgresql/)"
# The admin: makes and drops site roles and databases (CREATEROLE, CREATEDB), reads their sizes
# and ends their sessions before a drop; no superuser. PUBLIC loses CONNECT on the maintenance
# databases: a site's role has nothing to do there.
su postgres -c "PGOPTIONS=--client-min-messages=warning psql -q -v ON_ERROR_STOP=1 -v pw=\"$PG_PASSWORD\" -d postgres" <<'SQL' >/dev/null
SELECT format('CREATE ROLE director LOGIN CREATEDB CREATEROLE PASSWORD %L', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'director') \gexec
ALTER ROLE director LOGIN CREATEDB CREATEROLE NOSUPERUSER PASSWORD :'pw';
GRANT pg_read_all_stats, pg_signal_backend TO director;
REVOKE CONNECT ON DATABASE postgres, template1 FROM PUBLIC;
GRANT CONNECT ON DATABASE postgres TO director;
SQL
log "databases: PostgreSQL on 127.0.0.1:5432 and $ADDR:5432 (admin $ADMIN)"

# ---------------------------------------------------------------- MariaDB
my_changed=$(put "$MYSQL_CONF" 0644 "# Managed by scripts/stack-databases.sh
[mysqld]
bind-address = 127.0.0.1,$ADDR
skip-name-resolve
local-infile = 0
max_connections = 300
# Each site's users are also limited one by one (MAX_USER_CONNECTIONS): this is the ceiling.
max_user_connections = 50")
# MariaDB's init script leaves mysqld_safe in its caller's session: started in one of its own
# (setsid), it outlives whatever ran this script (a test run, a shell that is closed).
my_up() { mariadb-admin --protocol=socket ping >/dev/null 2>&1 && bash -c "exec 3<>/dev/tcp/$ADDR/3306"; }
if [ -n "$my_changed" ] && mariadb-admin --protocol=socket ping >/dev/null 2>&1; then
    log "databases: MariaDB's configuration changed, restarting"
    setsid -w service mariadb restart </dev/null >/dev/null
elif ! my_up; then
    log "databases: starting MariaDB"
    setsid -w service mariadb start </dev/null >/dev/null
fi
wait_for 60 my_up || die "MariaDB is not answering on $ADDR:3306 (/var/log/mysql/)"
# The admin: everything on the site schemas (site_%) with GRANT OPTION, users, and ending a
# site's sessions before a drop; nothing on any other schema.
mariadb --protocol=socket -u root <<SQL
CREATE USER IF NOT EXISTS '$ADMIN'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
ALTER USER '$ADMIN'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON \`site\\_%\`.* TO '$ADMIN'@'127.0.0.1' WITH GRANT OPTION;
GRANT CREATE USER, CONNECTION ADMIN, PROCESS ON *.* TO '$ADMIN'@'127.0.0.1';
GRANT SELECT ON mysql.global_priv TO '$ADMIN'@'127.0.0.1';
SQL
log "databases: MariaDB on 127.0.0.1:3306 and $ADDR:3306 (admin $ADMIN)"
