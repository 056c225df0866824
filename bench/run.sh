#!/usr/bin/env bash
# `npm run bench [-- --full] [-- --profile]`: builds the bridge (tsc) and the bench
# (esbuild), raises the open-files limit for the many visitor sockets (the bridge child
# inherits it), then runs bench/main.ts. Results: a table on stdout, JSON in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
# Root may raise the hard limit; others get their hard limit.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
npm run --silent build >&2
node bench/build.mjs
# `npm run bench -- --soak [--minutes N]` (or `npm run bench:soak`): the memory soak instead.
if [[ "${1:-}" == "--soak" ]]; then
  shift
  exec node .tmp/bench/soak.mjs "$@"
fi
exec node --max-old-space-size=8192 .tmp/bench/main.mjs "$@"
