#!/bin/bash
# The production stack's broker: the Erlang cookie from its secret, then rabbitmq-server (it loads
# the definitions at boot: users without passwords, permissions, Director's exchanges, queue
# policies), then the passwords, Director's and the observer's connection limits and the admin
# user from the secrets, read by the node itself (no password on any command line), then "ready".
# Every start sets them again: a new secret (rotation) or a new definitions file (an import
# empties the passwords) takes effect with a restart of the task.
#
#   rabbitmq-entrypoint              run the broker
#   rabbitmq-entrypoint healthcheck  exit 0 when ready and the TLS listener accepts connections
set -euo pipefail

SECRETS=${RABBITMQ_SECRETS_DIR:-/run/secrets}
READY=/tmp/rabbitmq-ready

if [ "${1:-}" = healthcheck ]; then
    [ -f "$READY" ] || { echo "not ready: the users are not set up yet" >&2; exit 1; }
    exec 3<>/dev/tcp/127.0.0.1/5671 || { echo "the TLS listener does not accept connections" >&2; exit 1; }
    echo "ready"
    exit 0
fi

log() { printf '{"msg": "%s", "source": "rabbitmq-entrypoint"}\n' "$*"; }
rm -f "$READY"

# The cookie of the node and of its CLI tools (this script, an operator's `docker exec ...
# rabbitmqctl`); Erlang wants it in $HOME (the volume), owned by us, readable by nobody else.
install -m 0400 "$SECRETS/rabbitmq_erlang_cookie" "$HOME/.erlang.cookie"

rabbitmq-server "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null' TERM INT

ctl() { rabbitmqctl -q "$@"; }
until ctl await_startup --timeout 5 >/dev/null 2>&1; do
    kill -0 "$server" 2>/dev/null || { wait "$server"; exit $?; }
    sleep 1
done

# Erlang evaluated by the node: it reads the secret files itself (mounted for this user only).
# Trailing whitespace (a newline left by `echo ... | docker secret create`) is not part of one.
secret() { printf 'string:trim(element(2, {ok, _} = file:read_file("%s/%s")), trailing)' "$SECRETS" "$1"; }
ctl eval "
    Set = fun(User, Secret) ->
        case rabbit_auth_backend_internal:exists(User) of
            true -> ok = rabbit_auth_backend_internal:change_password(User, Secret, <<\"rabbitmq-entrypoint\">>);
            false -> ok = rabbit_auth_backend_internal:add_user(User, Secret, <<\"rabbitmq-entrypoint\">>)
        end
    end,
    ok = Set(<<\"orchestrator\">>, $(secret orchestrator_amqp_password)),
    ok = Set(<<\"director\">>, $(secret director_amqp_password)),
    ok = Set(<<\"observer\">>, $(secret observer_amqp_password)),
    ok = Set(<<\"collector\">>, $(secret collector_amqp_password)),
    Admin = $(secret rabbitmq_admin_user),
    ok = Set(Admin, $(secret rabbitmq_admin_password)),
    ok = rabbit_auth_backend_internal:set_tags(Admin, [administrator], <<\"rabbitmq-entrypoint\">>),
    ok = rabbit_auth_backend_internal:set_permissions(Admin, <<\"/\">>, <<\".*\">>, <<\".*\">>, <<\".*\">>,
                                                      <<\"rabbitmq-entrypoint\">>),
    % A leaked Director or observer credential cannot open connections or channels without end.
    ok = rabbit_auth_backend_internal:set_user_limits(<<\"director\">>,
        #{<<\"max-connections\">> => 64, <<\"max-channels\">> => 512}, <<\"rabbitmq-entrypoint\">>),
    ok = rabbit_auth_backend_internal:set_user_limits(<<\"observer\">>,
        #{<<\"max-connections\">> => 32, <<\"max-channels\">> => 256}, <<\"rabbitmq-entrypoint\">>),
    case Admin =/= <<\"guest\">> andalso rabbit_auth_backend_internal:exists(<<\"guest\">>) of
        true -> ok = rabbit_auth_backend_internal:delete_user(<<\"guest\">>, <<\"rabbitmq-entrypoint\">>);
        false -> ok
    end,
    ok." >/dev/null
touch "$READY"
log "users ready: passwords set from the secrets"

status=0
wait "$server" || status=$?
# A TERM (docker stop) interrupts `wait` (status 128 + 15): wait for the node's own shutdown.
if [ "$status" -gt 128 ]; then status=0; wait "$server" || status=$?; fi
exit "$status"
