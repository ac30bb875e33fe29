# Sourced by the postgres image's entrypoint once, when the data volume is new: the orchestrator's
# admin (deploy/databases/compose.yaml), as scripts/stack-databases.sh makes the local stack's.
# Not a superuser: it makes and drops site roles and databases, reads sizes, ends site sessions.
password=$(cat /run/secrets/postgres_admin_password)
docker_process_sql -v pw="$password" <<'SQL'
CREATE ROLE director LOGIN CREATEDB CREATEROLE NOSUPERUSER PASSWORD :'pw';
GRANT pg_read_all_stats, pg_signal_backend TO director;
REVOKE CONNECT ON DATABASE postgres, template1 FROM PUBLIC;
GRANT CONNECT ON DATABASE postgres TO director;
SQL
unset password
