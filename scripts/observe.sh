#!/usr/bin/env bash
# `make observe`: Prometheus with ptf-admin's scrape config and alert rules,
# scraping the stack that `make run` started (HTTP /metrics on 8081-8084).
# Data is kept under .data/prometheus. Runs in the foreground; Ctrl-C stops it.
set -euo pipefail

cd "$(dirname "$0")/.."
CONFIG=monitoring/prometheus/prometheus.yml
STORAGE=.data/prometheus
PORT="${PROMETHEUS_PORT:-9090}"

scripts/ensure-debian-tools.sh prometheus=prometheus

port_taken() {
    python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)' "$1"
}
if port_taken "$PORT"; then
    PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
ADDRESS="http://127.0.0.1:${PORT}"

mkdir -p "$STORAGE"
cat <<BANNER
Prometheus for the local ptf-admin stack (start it first with: make run)

  address:  ${ADDRESS}
  targets:  curl -s ${ADDRESS}/api/v1/targets | python3 -m json.tool | grep -E '"(job|health)"'
  rules:    curl -s ${ADDRESS}/api/v1/rules | python3 -m json.tool | grep '"name"'
  alerts:   curl -s ${ADDRESS}/api/v1/alerts | python3 -m json.tool
  a query:  curl -s ${ADDRESS}/api/v1/query --data-urlencode 'query=up'

Ctrl-C stops it.
BANNER

exec prometheus \
    --config.file="$CONFIG" \
    --storage.tsdb.path="$STORAGE" \
    --web.listen-address="127.0.0.1:${PORT}" \
    --log.level=warn
