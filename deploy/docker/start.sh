#!/bin/sh
# Start command of a saasfw service image. `exec` makes the server PID 1's process itself,
# so SIGTERM from the kubelet reaches it directly and the drain runs.
#
#   SAASFW_APP       MODULE:ATTRIBUTE of an ASGI app: served by `saasfw-k8s serve`
#                    (readiness 503 on SIGTERM, in-flight requests drain, exit 0)
#   SERVICE_COMMAND  otherwise, the service's own console script (e.g. orders-service)
#   HOST, PORT       bind address (default 0.0.0.0:8000)
set -eu

if [ -n "${SAASFW_APP:-}" ]; then
    exec saasfw-k8s serve "$SAASFW_APP" --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}"
fi
exec "${SERVICE_COMMAND:?set SAASFW_APP (module:attribute) or SERVICE_COMMAND (a console script)}"
