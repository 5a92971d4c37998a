#!/bin/sh
# Renders the example service's manifests into deploy/k8s/orders (committed; a test checks
# they are up to date). Re-run after changing saasfw-k8s or these options:
#   sh deploy/k8s/render.sh
# Secrets are referenced by name only; create them in the cluster, e.g.
#   kubectl -n orders create secret generic orders-secrets --from-literal=SAASFW_DB__URL=...
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec saasfw-k8s render \
    --service orders \
    --env development \
    --env production \
    --image "${IMAGE:-saasfw/orders-service:0.1.0}" \
    --secret orders-secrets \
    --set observability.logging.level=INFO \
    --out "${OUT:-$here/orders}"
