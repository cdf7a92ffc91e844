#!/bin/bash
# Conformance suite: the official @daytonaio/sdk (pinned in package.json) against scripts/daytona-local.
# Starts its own server on a free port with a fresh data dir, runs every test file with node's built-in
# test runner, stops the server. Exit status: non-zero on any failure.
#
#   tests/conformance/run.sh                 # all tests
#   tests/conformance/run.sh test/03-files.test.js ...   # some files (paths relative to tests/conformance)
#   CONFORMANCE_KEEP_DATA=1 ...              # keep the server's data dir and log for inspection
#   DAYTONA_API_URL=... DAYTONA_API_KEY=... CONFORMANCE_EXTERNAL=1 ...  # use an already running server
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$HERE"

TRANSITION_MS="${CONFORMANCE_TRANSITION_MS:-50}"
export CONFORMANCE_TRANSITION_MS="$TRANSITION_MS"

if [ ! -d node_modules/@daytonaio/sdk ]; then
    echo "conformance: installing the pinned SDK (npm ci)" >&2
    npm ci --no-audit --no-fund >&2
fi

SERVER_PID=""
DATA=""
cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "$DATA" ]; then
        if [ -n "${CONFORMANCE_KEEP_DATA:-}" ] || [ "$rc" -ne 0 ]; then
            echo "conformance: server data and log kept in $DATA" >&2
        else
            rm -rf "$DATA"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${CONFORMANCE_EXTERNAL:-}" ]; then
    DATA="$(mktemp -d /tmp/daytona-conformance.XXXXXX)"
    KEY="conformance-$RANDOM$RANDOM"
    # The server prints its API base URL as the first stdout line once it listens.
    # Its other output goes to a log file so that the pipe never fills up.
    FIFO="$DATA/stdout.fifo"
    mkfifo "$FIFO"
    # The suite checks the SDK against the server's wire format. The listing lag and the stale
    # runner after a restore are timing quirks of the real service that SDK 0.218 does not handle
    # (its list() and toolbox calls would fail the same way against the cloud); they have their own
    # tests in tests/server, and are off here.
    "$ROOT/scripts/daytona-local" --port 0 --data "$DATA/data" --transition-ms "$TRANSITION_MS" \
        --list-lag-ms 0 --runner-cache-ms 0 \
        --api-key "$KEY" >"$FIFO" 2>"$DATA/server.stderr" &
    SERVER_PID=$!
    URL=""
    exec 3<"$FIFO"
    if ! IFS= read -r -t 30 URL <&3; then
        echo "conformance: the server did not print its URL within 30 s" >&2
        cat "$DATA/server.stderr" >&2 || true
        exit 1
    fi
    # Keep draining the server's stdout in the background.
    cat <&3 >"$DATA/server.stdout" &
    exec 3<&-
    case "$URL" in
        http://*/api) ;;
        *) echo "conformance: unexpected first line from the server: $URL" >&2; exit 1 ;;
    esac
    export DAYTONA_API_URL="$URL"
    export DAYTONA_API_KEY="$KEY"
    export DAYTONA_TARGET="${DAYTONA_TARGET:-us}"
    echo "conformance: server pid $SERVER_PID at $URL (data $DATA)" >&2
else
    : "${DAYTONA_API_URL:?}" "${DAYTONA_API_KEY:?}"
    export DAYTONA_TARGET="${DAYTONA_TARGET:-us}"
fi
# Never let a developer's real Daytona settings leak into the run.
unset DAYTONA_JWT_TOKEN DAYTONA_ORGANIZATION_ID DAYTONA_SERVER_URL DAYTONA_OTEL_ENABLED DAYTONA_EXPERIMENTAL_OTEL_ENABLED

if [ $# -gt 0 ]; then
    FILES=("$@")
else
    FILES=(test/*.test.js)
fi

# One file at a time: some tests read the server's global request log or change its timing knobs.
START=$(date +%s)
set +e
node --test --test-concurrency=1 --test-reporter=spec "${FILES[@]}"
RC=$?
set -e
echo "conformance: ${#FILES[@]} files, exit $RC, $(( $(date +%s) - START )) s" >&2
exit "$RC"
