#!/usr/bin/env bash
# `make api-test`: a property test of the live API against its OpenAPI document (schemathesis).
#
# Starts the debug `ccs` (target/debug/ccs, with the fake claude CLI of the tests) on a free
# 127.0.0.1 port in a temp home, waits for /health, runs `schemathesis run` against
# http://127.0.0.1:PORT/openapi.json for every documented operation, and stops the server
# (always: a trap). Exits non-zero on any failure and prints a one-line summary.
#
# The server under test: auth on with one API key (the key is sent with every request, so the
# auth layer runs on each one), NO admin key (so `PUT /api/config` is always 403 and cannot
# rewrite the server under test), rate limit off (schemathesis sends thousands of requests),
# project folders limited to the temp home (a generated `project_path` such as "/" is 403, the
# fake CLI never runs elsewhere).
#
# Arguments are passed on to `schemathesis run` (e.g. --seed N, or --include-path-regex '^/v1/' for some operations only).
# Environment: PYENV (default target/pyenv), API_TEST_MAX_EXAMPLES (50), API_TEST_TIME_LIMIT
# (seconds for the whole schemathesis run, 900), API_TEST_WORKERS (2), API_TEST_KEEP=1 keeps
# the temp home (server log, schemathesis report) for a look after a failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
pyenv=${PYENV:-$root/target/pyenv}
ccs=$root/target/debug/ccs
fake=$root/target/debug/fake-claude
max_examples=${API_TEST_MAX_EXAMPLES:-50}
time_limit=${API_TEST_TIME_LIMIT:-900}
workers=${API_TEST_WORKERS:-2}

for needed in "$ccs" "$fake" "$pyenv/bin/schemathesis"; do
  [ -x "$needed" ] || { echo "api-test: $needed is missing (make api-test builds it)" >&2; exit 2; }
done

home=$(mktemp -d "${TMPDIR:-/tmp}/ccs-api-test.XXXXXX")
server_pid=
stop() {
  local status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${API_TEST_KEEP:-}" = 1 ] || [ "$status" -ne 0 ]; then
    echo "api-test: kept $home (server log: $home/state/logs/server.log)" >&2
  else
    rm -rf "$home"
  fi
  exit "$status"
}
trap stop EXIT
trap 'echo "api-test: interrupted" >&2; exit 130' INT TERM

key="api-test-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$home/state" "$home/project" "$home/claude-config"
cat >"$home/state/config.json" <<EOF
{
  "claudePath": "$fake",
  "claudeEnv": {"CLAUDE_CONFIG_DIR": "$home/claude-config"},
  "defaultProjectPath": "$home/project",
  "allowedProjectRoots": ["$home/project"],
  "auth": {"apiKeys": ["$key"]},
  "rateLimit": {"enabled": false},
  "taskQueue": {"killGraceMs": 500},
  "webhook": {"retries": 0, "timeout": 1000},
  "liveCli": {"spares": 0}
}
EOF

free_port() {
  "$pyenv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A port taken between free_port and the bind makes the start fail: try another. The server
# runs in a session of its own, so a Ctrl-C reaches schemathesis alone and the trap stops the
# server (else a server gone by then would read as one that died under test).
port=
for _ in 1 2 3 4 5; do
  candidate=$(free_port)
  HOME="$home" setsid "$ccs" --home "$home/state" --port "$candidate" serve >"$home/serve.out" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$candidate/health" 2>/dev/null; then
      port=$candidate
      break 2
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
done
if [ -z "$port" ]; then
  echo "api-test: ccs did not start; its output:" >&2
  cat "$home/serve.out" >&2
  exit 1
fi

base=http://127.0.0.1:$port
echo "api-test: ccs (pid $server_pid) on $base; schemathesis, at most $max_examples examples an operation, ${time_limit} s"
started=$(date +%s)
set +e
# `timeout` bounds the wall clock (schemathesis' own --max-time is a budget it fills, not a
# bound); --foreground keeps schemathesis in the terminal's process group, so Ctrl-C stops it.
PYTHONPATH="$root/tests/python${PYTHONPATH:+:$PYTHONPATH}" \
  CCS_API_TEST_PROJECT="$home/project" CCS_API_TEST_URL="$base" CCS_API_TEST_KEY="$key" \
  CCS_API_TEST_EXPECTED="$home/expected-5xx.txt" \
  timeout --foreground --kill-after=30 "$time_limit" "$pyenv/bin/schemathesis" --config-file "$root/tests/python/schemathesis.toml" \
  run "$base/openapi.json" \
  --url "$base" \
  --header "Authorization: Bearer $key" \
  --max-examples "$max_examples" \
  --workers "$workers" \
  --no-color \
  --report junit --report-dir "$home/report" \
  "$@" 2>&1 | tee "$home/schemathesis.out"
status=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - started))

# The server must have lived through it all.
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "api-test: FAILED: ccs died during the run; the end of its log:" >&2
  tail -n 40 "$home/state/logs/server.log" >&2 || true
  exit 1
fi
panics=$(grep -c "panicked" "$home/state/logs/server.log" || true)

out=$home/schemathesis.out
tested=$(awk '/^API Operations:/ { in_ops = 1 } in_ops && /Tested:/ { print $2; exit }' "$out")
cases=$(awk '/^Test cases:/ { getline; sub(/^ +/, ""); print; exit }' "$out")
seed=$(awk '/^Seed:/ { print $2; exit }' "$out")
expected=0
[ -f "$home/expected-5xx.txt" ] && expected=$(wc -l <"$home/expected-5xx.txt")
summary="${tested:-?} operations, test cases: ${cases:-?}; $expected expected 5xx of the fake CLI (api_test_hooks.py); seed ${seed:-?}"
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "api-test: FAILED: schemathesis did not finish within ${time_limit} s; $summary" >&2
  exit 1
fi
if [ "$status" -ne 0 ] || [ "$panics" -ne 0 ]; then
  echo "api-test: FAILED (schemathesis exit $status, $panics handler panics in the server log) in ${elapsed} s; $summary" >&2
  exit 1
fi
echo "api-test: passed in ${elapsed} s: $summary"
