#!/bin/sh
# Renders the example services' manifests into deploy/k8s/orders and deploy/k8s/projections
# (committed; tests check they are up to date). Re-run after changing saasfw-k8s or these
# options:
#   sh deploy/k8s/render.sh
# Secrets are referenced by name only; create them in the cluster, e.g.
#   kubectl -n orders create secret generic orders-secrets --from-literal=SAASFW_DB__URL=...
# Egress: DNS, PostgreSQL 5432, the OTLP collector 4317/4318, and the message broker
# (RabbitMQ 5672, NATS 4222: the orders events go from orders to projections through it);
# orders also reaches Redis 6379.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
saasfw-k8s render \
    --service orders \
    --env development \
    --env production \
    --image "${IMAGE:-saasfw/orders-service:0.1.0}" \
    --secret orders-secrets \
    --set observability.logging.level=INFO \
    --egress-port 5432 --egress-port 6379 --egress-port 4317 --egress-port 4318 \
    --egress-port 5672 --egress-port 4222 \
    --out "${OUT:-$here/orders}"
exec saasfw-k8s render \
    --service projections \
    --env development \
    --env production \
    --image "${PROJECTIONS_IMAGE:-saasfw/projections-service:0.1.0}" \
    --secret projections-secrets \
    --set observability.logging.level=INFO \
    --egress-port 5432 --egress-port 4317 --egress-port 4318 \
    --egress-port 5672 --egress-port 4222 \
    --out "${PROJECTIONS_OUT:-$here/projections}"
