#!/usr/bin/env bash
# Starts build/web_demo on a free port against MONGO_CACHE_URI and drives it
# with curl like a browser would (a cookie jar), printing each exchange.
# Exit status: non-zero when any step does not behave as expected.
set -euo pipefail

bin=${WEB_DEMO_BIN:-./build/web_demo}
: "${MONGO_CACHE_URI:?set MONGO_CACHE_URI (make demo does)}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/web_demo.XXXXXX")
pid=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT INT TERM

fail() { echo "web_demo.sh: FAILED: $*" >&2; echo "---- server output ----" >&2; cat "$tmp/server.log" >&2; exit 1; }

"$bin" 0 "$tmp/port" >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    [ -s "$tmp/port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "web_demo exited during start-up"
    sleep 0.1
done
[ -s "$tmp/port" ] || fail "web_demo did not start listening within 10 s"
base="http://127.0.0.1:$(tr -dc 0-9 <"$tmp/port")"
echo "== web_demo listening at $base (MongoDB: ${MONGO_CACHE_URI%%\?*})"

get() { # get PATH [curl options...]: prints the exchange, leaves body in $body
    local path=$1; shift
    echo "-- GET $path $*"
    body=$(curl -sS --max-time 10 "$@" "$base$path") || fail "curl $path"
    printf '%s\n' "$body" | sed 's/^/   /'
}

jar="$tmp/cookies"
for n in 1 2 3; do
    get / -b "$jar" -c "$jar"
    grep -q "visits in this session: $n$" <<<"$body" || fail "expected visit $n"
done
grep -q "from the cache" <<<"$body" || fail "third page should come from the cache"
echo "   (cookie jar holds: $(awk '$6=="sid"{print "sid=" substr($7,1,8) "..."}' "$jar"))"

get / -c "$tmp/other"   # a second browser: a new session starting at 1
grep -q "visits in this session: 1$" <<<"$body" || fail "a new browser should start at 1"

get / -b "sid=forged-cookie-value"   # a forged cookie is simply a new session
grep -q "session: new" <<<"$body" || fail "a forged cookie must start a new session"

get /health
[ "$body" = ok ] || fail "/health should answer ok"

get /events
grep -q "recent events of demo-user: 5" <<<"$body" || fail "expected 5 logged page views"

get /logout -b "$jar"
get / -b "$jar" -c "$jar"
grep -q "visits in this session: 1$" <<<"$body" || fail "after logout the counter restarts"

kill -TERM "$pid"
wait "$pid" || fail "web_demo exited with an error"
pid=""
echo "-- server output"
sed 's/^/   /' "$tmp/server.log"
echo "== web demo OK"
