#!/usr/bin/env bash
# Makes sure a RabbitMQ installed on this machine is running, and waits until
# it accepts work. With Docker, use `docker compose -f docker/compose.yaml
# up -d --wait rabbitmq` instead.
set -euo pipefail
if rabbitmqctl -q status >/dev/null 2>&1; then
  echo "rabbitmq: already running"
  exit 0
fi
command -v rabbitmq-server >/dev/null || { echo "rabbitmq: not installed here; use Docker (docker/compose.yaml) or set AMQP_URL" >&2; exit 1; }
echo "rabbitmq: starting"
rabbitmq-server -detached
# The server returns at once and opens its port seconds later; await_startup
# fails when called too early, so retry it for up to a minute.
for _ in $(seq 1 60); do
  if rabbitmqctl -q await_startup >/dev/null 2>&1; then
    echo "rabbitmq: ready"
    exit 0
  fi
  sleep 1
done
echo "rabbitmq: did not start within 60 s; see /var/log/rabbitmq" >&2
exit 1
