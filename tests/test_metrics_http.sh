#!/usr/bin/env bash
# Usage: tests/test_metrics_http.sh build/metrics_server
# Starts the example HTTP server against MONGO_TEST_URI, checks /health,
# /ping, /metrics and a 404 with curl, and checks /health turns 503 when
# the server is unreachable, saying only "down" over HTTP (the reason goes
# to the server's log, without the password).  Run under
# tests/with_server.sh.
set -euo pipefail
bin=$1
: "${MONGO_TEST_URI:?run under tests/with_server.sh}"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; true; }
trap cleanup EXIT
fail() { echo "test_metrics_http: FAIL: $*" >&2; exit 1; }

errlog=$(mktemp)
trap 'cleanup; rm -f "$errlog"' EXIT
start() { # URI
  port=$(free_port)
  MONGO_HELPER_CONFIG=/dev/null MONGO_COMMAND_METRICS=true MONGO_CACHE_URI="$1" MONGO_DB=mh_test "$bin" "$port" >/dev/null 2>"$errlog" &
  pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/metrics" && return 0; sleep 0.1; done
  fail "server did not start"
}
stop() { kill "$pid"; wait "$pid" || fail "server did not exit cleanly on SIGTERM"; pid=""; }

start "$MONGO_TEST_URI"
body=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$port/health")
[ "$(tail -1 <<<"$body")" = 200 ] || fail "/health: $body"
grep -q '"status":"ok"' <<<"$body" || fail "/health body: $body"
grep -q '"circuit":"closed"' <<<"$body" || fail "/health circuit: $body"
for _ in 1 2 3; do [ "$(curl -s "http://127.0.0.1:$port/ping")" = pong ] || fail "/ping"; done
metrics=$(curl -s -D /tmp/mh_metrics_headers.$$ "http://127.0.0.1:$port/metrics")
grep -qi '^Content-Type: text/plain; version=0.0.4' /tmp/mh_metrics_headers.$$ || fail "content type"
rm -f /tmp/mh_metrics_headers.$$
grep -q '^mongo_helper_operations_total{op="read_command"} 3$' <<<"$metrics" || fail "operations counter: $metrics"
grep -q '^mongo_helper_commands_succeeded_total{command="ping"} 3$' <<<"$metrics" || fail "APM counter"
grep -q '^mongo_helper_operation_duration_seconds_count{op="read_command"} 3$' <<<"$metrics" || fail "histogram"
grep -q '^# TYPE mongo_helper_pool_in_use gauge$' <<<"$metrics" || fail "pool gauge"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nope")" = 404 ] || fail "404"
stop

# A server nobody listens on: /health says 503 quickly, and only "down":
# no error text, host, user name or password over HTTP.  The password has
# characters that once ended the redactor's idea of a URI.
start "mongodb://monitor:Hunter2?Se cret#x@127.0.0.1:$(free_port)/mh_test?serverSelectionTimeoutMS=300"
body=$(curl -s -m 5 -w '\n%{http_code}' "http://127.0.0.1:$port/health")
[ "$(tail -1 <<<"$body")" = 503 ] || fail "/health when down: $body"
grep -q '"status":"down"' <<<"$body" || fail "/health body when down: $body"
for word in error monitor 127.0.0.1 mongodb ping; do
  grep -qi "$word" <<<"$(head -1 <<<"$body")" && fail "/health body shows '$word': $body"
done
all="$body$(curl -s "http://127.0.0.1:$port/ping")$(curl -s "http://127.0.0.1:$port/metrics")"
grep -qE 'Hunter2|cret#' <<<"$all" && fail "password leaked over HTTP"
stop
# The reason is in the log, for the operator, still without the password.
grep -q 'ping to mongodb://monitor:\*\*\*\*@127.0.0.1' "$errlog" || fail "no reason in the log: $(cat "$errlog")"
grep -qE 'Hunter2|cret#' "$errlog" && fail "password leaked to the log: $(cat "$errlog")"
echo "test_metrics_http: all checks passed"
