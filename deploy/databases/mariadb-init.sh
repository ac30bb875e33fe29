# Sourced by the mariadb image's entrypoint once, when the data volume is new: the orchestrator's
# admin (deploy/databases/compose.yaml), as scripts/stack-databases.sh makes the local stack's.
# Everything on the site schemas (site\_%) and nothing on any other; users; ending sessions.
password=$(cat /run/secrets/mysql_admin_password)
docker_process_sql <<SQL
CREATE USER 'director'@'%' IDENTIFIED BY '${password//\'/\'\'}';
GRANT ALL PRIVILEGES ON \`site\\_%\`.* TO 'director'@'%' WITH GRANT OPTION;
GRANT CREATE USER, CONNECTION ADMIN, PROCESS ON *.* TO 'director'@'%';
GRANT SELECT ON mysql.global_priv TO 'director'@'%';
SQL
unset password
