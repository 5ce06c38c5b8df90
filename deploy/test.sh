#!/usr/bin/env bash
# The test command: makes sure the host is set up (Docker engine, example images,
# virtualenv; idempotent), then runs the whole suite, unit and integration, with pytest.
# Extra arguments go to pytest, e.g. `bash deploy/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup-host.sh
export TESTCONTAINERS_RYUK_DISABLED=true
exec .venv/bin/python -m pytest "$@"
