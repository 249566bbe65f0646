#!/usr/bin/env bash
# Starts build/web_demo on a free port against MONGO_CACHE_URI and drives it
# with curl like a browser would (a cookie jar), printing each exchange.
# Checks what an application copying the demo gets right: the cookie's
# flags, state changes only by POST, a new session id at login, no error
# text for clients (against the test server, MH_MOCK_SERVER=1, a fail
# point makes one request fail).
# Exit status: non-zero when any step does not behave as expected.
set -euo pipefail

bin=${WEB_DEMO_BIN:-./build/web_demo}
: "${MONGO_CACHE_URI:?set MONGO_CACHE_URI (make demo does)}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/web_demo.XXXXXX")
pid=""
log=""

stop_demo() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_demo
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT INT TERM

fail() {
    echo "web_demo.sh: FAILED: $*" >&2
    if [ -n "$log" ]; then echo "---- server output ----" >&2; cat "$log" >&2; fi
    exit 1
}

# start_demo NAME [VAR=value...]: starts an instance, sets $base and $log.
start_demo() {
    local name=$1; shift
    log="$tmp/$name.log"
    rm -f "$tmp/port"
    env "$@" "$bin" 0 "$tmp/port" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        [ -s "$tmp/port" ] && break
        kill -0 "$pid" 2>/dev/null || fail "web_demo exited during start-up"
        sleep 0.1
    done
    [ -s "$tmp/port" ] || fail "web_demo did not start listening within 10 s"
    base="http://127.0.0.1:$(tr -dc 0-9 <"$tmp/port")"
    echo "== web_demo ($name) listening at $base (MongoDB: ${MONGO_CACHE_URI%%\?*})"
}

# req METHOD PATH [curl options...]: prints the exchange; leaves the body in
# $body, the status in $status and the response headers in $tmp/headers.
req() {
    local method=$1 path=$2; shift 2
    echo "-- $method $path $*"
    body=$(curl -sS --max-time 10 -X "$method" -D "$tmp/headers" -o "$tmp/body" \
        -w '%{http_code}' "$@" "$base$path") || fail "curl $method $path"
    status=$body
    body=$(cat "$tmp/body")
    printf '%s %s\n' "$status" "$body" | sed 's/^/   /'
}

set_cookie() { tr -d '\r' <"$tmp/headers" | sed -n 's/^[Ss]et-[Cc]ookie: //p'; }
jar_sid() { awk '$6=="sid"{print $7}' "$jar"; }

start_demo plain
jar="$tmp/cookies"

for n in 1 2 3; do
    req GET / -b "$jar" -c "$jar"
    grep -q "visits in this session: $n$" <<<"$body" || fail "expected visit $n"
    if [ "$n" = 1 ]; then
        cookie=$(set_cookie)
        echo "   Set-Cookie: ${cookie:0:12}...${cookie:47}"
        [[ "$cookie" =~ ^sid=[A-Za-z0-9_-]{43}\;\ Path=/\;\ HttpOnly\;\ SameSite=Lax$ ]] ||
            fail "the session cookie must be HttpOnly and SameSite=Lax (and not Secure over http): $cookie"
    fi
done
grep -q "from the cache" <<<"$body" || fail "third page should come from the cache"
before_login=$(jar_sid)
echo "   (cookie jar holds: sid=${before_login:0:8}...)"

req GET / -c "$tmp/other"   # a second browser: a new session starting at 1
grep -q "visits in this session: 1$" <<<"$body" || fail "a new browser should start at 1"

req GET / -b "sid=forged-cookie-value"   # a forged cookie is simply a new session
grep -q "session: new" <<<"$body" || fail "a forged cookie must start a new session"

# State changes only by POST: a link cannot log anybody in or out.
req GET /logout -b "$jar"
[ "$status" = 405 ] || fail "GET /logout must be refused (405), got $status"
tr -d '\r' <"$tmp/headers" | grep -qi '^Allow: POST$' || fail "405 must say Allow: POST"
req GET /login -b "$jar"
[ "$status" = 405 ] || fail "GET /login must be refused (405), got $status"

# Login gives the session a new id; the old one stops working at once.
req POST /login -b "$jar" -c "$jar"
[ "$status" = 200 ] || fail "POST /login answered $status"
after_login=$(jar_sid)
[ -n "$after_login" ] && [ "$after_login" != "$before_login" ] ||
    fail "login must give the session a new id"
req GET / -b "sid=$before_login"
grep -q "session: new" <<<"$body" || fail "the id from before the login must not work any more"
req GET / -b "$jar" -c "$jar"
grep -q "visits in this session: 4$" <<<"$body" || fail "the session keeps its data across the login"
grep -q "(demo-user)" <<<"$body" || fail "the session belongs to demo-user after the login"

req GET /health
[ "$body" = ok ] || fail "/health should answer ok"

req GET /events
grep -q "recent events of demo-user: 7" <<<"$body" || fail "expected 7 logged page views"

# A failure reaches the log, not the client.
if [ "${MH_MOCK_SERVER:-0}" = 1 ]; then
    /usr/bin/python3 - "$MONGO_CACHE_URI" <<'EOF' || fail "could not set the test server's fail point"
import sys
import pymongo
c = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
c.admin.command({'configureFailPoint': 'failCommand', 'mode': {'times': 1},
                 'data': {'failCommands': ['find'], 'errorCode': 2}})
EOF
    req GET / -b "$jar"
    [ "$status" = 500 ] && [ "$body" = "internal error" ] ||
        fail "a failing request must answer 500 'internal error' and nothing else"
    grep -q "load session failed: server error 2: .*failpoint" "$log" ||
        fail "the failure's details must be in the server's log"
fi

req POST /logout -b "$jar" -c "$jar"
[ "$status" = 200 ] || fail "POST /logout answered $status"
set_cookie | grep -q '^sid=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0$' ||
    fail "logout must clear the cookie: $(set_cookie)"
req GET / -b "sid=$after_login"
grep -q "visits in this session: 1$" <<<"$body" || fail "after logout the old id starts over"

kill -TERM "$pid"
wait "$pid" || fail "web_demo exited with an error"
pid=""
echo "-- server output"
sed 's/^/   /' "$log"

# Behind HTTPS the cookie is also Secure.
start_demo secure WEB_DEMO_SECURE_COOKIE=1
req GET /
set_cookie | grep -q '; HttpOnly; SameSite=Lax; Secure$' ||
    fail "with WEB_DEMO_SECURE_COOKIE=1 the cookie must be Secure: $(set_cookie)"
stop_demo
echo "== web demo OK"
