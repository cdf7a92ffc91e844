#!/bin/bash
# Conformance suite: the official @vercel/sandbox SDK (pinned in package.json) against
# scripts/vercel-local. Installs the pinned SDK when missing, then lib/with-server.js starts a
# server of its own (free port, fresh data dir), runs the test files one at a time with node's
# test runner, and stops the server. Exit status: non-zero on any failure.
#
#   tests/conformance-vercel/run.sh                           # all tests
#   tests/conformance-vercel/run.sh test/02-files.test.js     # some files (relative to this dir)
#   VERCEL_CONFORMANCE_KEEP_DATA=1 ...                        # keep the server's data and log
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -d node_modules/@vercel/sandbox ]; then
    echo "conformance-vercel: installing the pinned SDK (npm ci)" >&2
    npm ci --no-audit --no-fund >&2
fi

if [ $# -gt 0 ]; then files=("$@"); else files=(test/*.test.js); fi
start=$(date +%s)
set +e
# one file at a time: tests read the server's global stats and change its knobs
node lib/with-server.js -- node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
rc=$?
set -e
echo "conformance-vercel: ${#files[@]} files, exit $rc, $(( $(date +%s) - start )) s" >&2
exit "$rc"
