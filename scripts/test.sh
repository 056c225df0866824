#!/usr/bin/env bash
# `npm test`: the whole suite, as CI runs it. Installs what is missing
# (Debian packages when root, node_modules), then type-checks and runs every
# vitest project: unit, integration (private ejabberd and Redis on free
# ports, never the system's), e2e (Debian's chromium). The chaos scenario
# (`npm run test:chaos`) is run on demand, not here: see docs/operations.md.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh
[[ -d node_modules ]] || npm ci

npm run --silent typecheck
npm run --silent lint
npx vitest run --project unit --project integration --project e2e
# The same integration tests once more with the Redis store instead of the
# in-memory one (test/support/stack.ts reads PARLEY_TEST_STORE). The scale-out
# files always run on Redis (and Redis Cluster): once is enough.
PARLEY_TEST_STORE=redis npx vitest run --project integration --exclude 'test/integration/scale-out*.test.ts'
