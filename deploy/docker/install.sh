#!/bin/sh
# Build-stage dependency installation of a saasfw service image (deploy/Dockerfile runs it;
# tests-integration/test_deploy_assets.py runs it into a clean virtual environment).
#
# Builds every workspace distribution and the service as wheels (sources are not used, so
# what is installed is exactly what would be published), pins third-party packages to the
# versions in uv.lock, and installs them into one virtual environment that the final image
# copies. Nothing here ends up in the final image except that environment.
#
#   SERVICE_DIR     the service project (a directory with pyproject.toml), required
#   SERVICE_EXTRAS  extras of the service to install, e.g. "postgres,redis" (optional)
#   VENV            where to create the environment (default /app/.venv)
#   WHEELS          scratch directory for built wheels (default /tmp/wheels)
#   PYTHON          interpreter for the environment (default python3)
set -eu

: "${SERVICE_DIR:?set SERVICE_DIR to the service project, e.g. examples/orders_service}"
VENV="${VENV:-/app/.venv}"
WHEELS="${WHEELS:-/tmp/wheels}"
PYTHON="${PYTHON:-python3}"
SERVICE_EXTRAS="${SERVICE_EXTRAS:-}"

rm -rf "$WHEELS"
mkdir -p "$WHEELS/service"
uv build --all-packages --no-sources --wheel --out-dir "$WHEELS" --quiet
uv build "$SERVICE_DIR" --no-sources --wheel --out-dir "$WHEELS/service" --quiet
uv export --frozen --all-packages --all-extras --no-dev --no-emit-workspace --no-hashes \
    --format requirements-txt --quiet --output-file "$WHEELS/constraints.txt"

uv venv --quiet --python "$PYTHON" "$VENV"
set -- "$WHEELS"/service/*.whl
if [ "$#" -ne 1 ]; then
    echo "install.sh: expected one service wheel, found: $*" >&2
    exit 1
fi
service="$1"
if [ -n "$SERVICE_EXTRAS" ]; then
    service="$service[$SERVICE_EXTRAS]"
fi
uv pip install --quiet --python "$VENV/bin/python" --compile-bytecode \
    --constraint "$WHEELS/constraints.txt" "$WHEELS"/*.whl "$service"
rm -rf "$WHEELS"
