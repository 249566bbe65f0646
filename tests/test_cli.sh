#!/usr/bin/env bash
# Usage: tests/test_cli.sh build/mongo-helper build/cli_fixture
#
# The mongo-helper tool against the test server (MONGO_TEST_URI, see
# tests/with_server.sh): every command is run, its output parsed (JSON with
# /usr/bin/python3) and its exit status checked; data is written with the
# library (build/cli_fixture) and read back with the tool.  `config` is run
# with each URI source and each setting source; no output ever contains a
# password, on success or failure.
set -uo pipefail

tool=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
fixture=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=/usr/bin/python3
: "${MONGO_TEST_URI:?run under tests/with_server.sh}"
test_uri=$MONGO_TEST_URI

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mh_cli.XXXXXX")
bg_pids=()
cleanup() {
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1 # no conf/mongo_helper.ini here unless a test writes one

# Only what a test sets is seen.
for v in $(env | sed -n 's/^\(MONGO_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

# Collections of this run only, so a real server's data is never touched.
run_id=cli_$$
S=${run_id}_sessions C=${run_id}_cache E=${run_id}_events

checks=0
fail() {
    echo "test_cli: FAILED: $*" >&2
    exit 1
}

# run WANT_RC CMD...: runs CMD, stdout in $out, stderr in $err, and checks
# the exit status.
run() {
    local want=$1
    shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    checks=$((checks + 1))
    [ "$rc" = "$want" ] || fail "$*: expected exit $want, got $rc
--- stdout:
$out
--- stderr:
$err"
}

# jcheck PYTHON_EXPR...: each expression must hold for d = json.loads($out)
# (the last line of stdout).
jcheck() {
    checks=$((checks + $#))
    tail -n 1 <<<"$out" | "$py" -c '
import json, sys
d = json.loads(sys.stdin.read())
for e in sys.argv[1:]:
    if not eval(e):
        sys.exit("expected " + e)' "$@" || fail "in the JSON: $out"
}

# setting NAME: the JSON object of that setting in config --json output.
setting_is() { # NAME VALUE SOURCE SOURCE_TEXT_PART
    jcheck "[s for s in d['settings'] if s['name'] == '$1'][0]['value'] == $2" \
        "[s for s in d['settings'] if s['name'] == '$1'][0]['source'] == '$3'" \
        "'$4' in [s for s in d['settings'] if s['name'] == '$1'][0]['source_text']"
}

contains() { # TEXT NEEDLE WHAT
    checks=$((checks + 1))
    grep -qF -- "$2" <<<"$1" || fail "$3: expected '$2' in: $1"
}

mh() { "$tool" --uri "$test_uri" "$@"; }
fx() { MONGO_CACHE_URI=$test_uri "$fixture" "$@" || fail "fixture $*"; }

# ---- help, version, usage errors ---------------------------------------------

run 0 "$tool" --help
contains "$out" "Exit status: 0 ok, 1 failed or unreachable, 2 usage error, 3 configuration error." "--help"
help_text=$out
commands=("config" "ping" "status" "stats" "ensure-indexes" "sessions count" "sessions destroy-user"
    "cache get" "cache delete" "cache clear" "events tail" "metrics")
for c in "${commands[@]}"; do
    contains "$help_text" "  $c " "--help lists $c"
    # shellcheck disable=SC2086
    run 0 "$tool" help $c
    usage=$(head -n 1 <<<"$out")
    contains "$usage" "usage: mongo-helper $c" "help $c"
    # shellcheck disable=SC2086
    run 0 "$tool" $c --help
    [ "$(head -n 1 <<<"$out")" = "$usage" ] || fail "$c --help differs from help $c"
    # The README and the man page show the same synopsis.
    synopsis=${usage#usage: }
    contains "$(cat "$src/README.md")" "$synopsis" "README synopsis of $c"
    contains "$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$src/tools/mongo-helper.1")" "$synopsis" \
        "man page synopsis of $c"
done
# The README shows --help as it is.
while IFS= read -r line; do
    [ -z "$line" ] || contains "$(cat "$src/README.md")" "$line" "README copy of --help"
done <<<"$help_text"
run 0 "$tool" --version
contains "$out" "mongo-helper 0." "--version"
run 2 "$tool"
run 2 "$tool" frobnicate
contains "$err" "'frobnicate' is not a command" "unknown command"
run 2 "$tool" sessions
contains "$err" "needs a sub-command" "sessions alone"
run 2 "$tool" config --no-such-option
contains "$err" "unknown option '--no-such-option'" "unknown option"
run 2 "$tool" ping --timeout soon
run 2 "$tool" events tail --since 5 --uri "$test_uri"
contains "$err" "not a duration" "bad duration"
run 2 "$tool" help nothing
run 0 "$tool" -c "$tmp/none.ini" --timeout 10 help events tail
contains "$out" "usage: mongo-helper events tail" "help after global options"

# ---- config: each URI source (the precedence table) --------------------------

cat >"$tmp/app.ini" <<EOF
[db]
mongo_uri = mongodb://ini-host:27017/inidb
EOF
run 0 env MONGO_CACHE_URI=mongodb://cache-host/cachedb MONGO_URI=mongodb://plain/plaindb \
    "$tool" --uri mongodb://explicit-host/expdb -c "$tmp/app.ini" config --json
jcheck "d['uri'] == 'mongodb://explicit-host/expdb'" "d['uri_source'] == 'explicit URI argument'" \
    "d['database'] == 'expdb'"
run 0 env MONGO_CACHE_URI=mongodb://cache-host/cachedb MONGO_URI=mongodb://plain/plaindb \
    "$tool" -c "$tmp/app.ini" config --json
jcheck "d['uri_source'] == 'environment MONGO_CACHE_URI'" "d['database'] == 'cachedb'"
run 0 env MONGO_URI=mongodb://plain/plaindb MONGO_HOST=parts "$tool" -c "$tmp/app.ini" config --json
jcheck "d['uri_source'] == '$tmp/app.ini [db] mongo_uri'" "d['database'] == 'inidb'"
run 0 env MONGO_URI=mongodb://plain/plaindb MONGO_HOST=parts "$tool" config --json
jcheck "d['uri_source'] == 'environment MONGO_URI'" "d['database'] == 'plaindb'"
run 0 env MONGO_HOST=db1,db2:27018 MONGO_PORT=27999 MONGO_DB=partsdb MONGO_REPLICA_SET=rs0 \
    "$tool" config --json
jcheck "d['uri'] == 'mongodb://db1:27999,db2:27018/partsdb?replicaSet=rs0'" \
    "d['uri_source'].startswith('environment MONGO_HOST')"
setting_is replicaSet "'rs0'" uri "MONGO_HOST"
run 0 env MONGO_DB=defdb "$tool" config --json
jcheck "d['uri'] == 'mongodb://localhost:27017/'" "d['uri_source'].startswith('default')" \
    "d['database'] == 'defdb'"
setting_is database "'defdb'" environment "MONGO_DB"
# The INI file through MONGO_HELPER_CONFIG, and the default file.
run 0 env MONGO_HELPER_CONFIG="$tmp/app.ini" "$tool" config --json
jcheck "d['database'] == 'inidb'"
mkdir -p "$tmp/conf" && cp "$tmp/app.ini" "$tmp/conf/mongo_helper.ini"
run 0 "$tool" config --json
jcheck "d['uri_source'] == 'conf/mongo_helper.ini [db] mongo_uri'"
rm -r "$tmp/conf"
# Text output names the sources too.
run 0 env MONGO_MAX_POOL_SIZE=12 "$tool" --uri mongodb://h/db config
contains "$out" "environment MONGO_MAX_POOL_SIZE" "config text"
contains "$out" "default (libmongoc)" "config text"

# ---- config: each setting source ----------------------------------------------

cat >"$tmp/settings.ini" <<EOF
[db]
mongo_uri = mongodb://h/db?maxPoolSize=7&w=1
connect_timeout_ms = 1111
retry_base_ms = 20
connection_options = "socketTimeoutMS=3333&readConcernLevel=majority&maxPoolSize=9&readPreference=secondaryPreferred"
EOF
run 0 env MONGO_SERVER_SELECTION_TIMEOUT_MS=4444 MONGO_RETRY_ATTEMPTS=2 \
    "$tool" -c "$tmp/settings.ini" config --json
setting_is max_pool_size "'7'" uri "URI from $tmp/settings.ini [db] mongo_uri"
setting_is server_selection_timeout_ms "'4444'" environment "environment MONGO_SERVER_SELECTION_TIMEOUT_MS"
setting_is connect_timeout_ms "'1111'" ini "$tmp/settings.ini [db] connect_timeout_ms"
setting_is socket_timeout_ms "'3333'" connection_options "[db] connection_options"
setting_is min_pool_size "'0'" default "default (libmongoc)"
setting_is wait_queue_timeout_ms "'10000'" default "default (mongo_helper)"
setting_is retry_attempts "'2'" environment "MONGO_RETRY_ATTEMPTS"
setting_is retry_base_ms "'20'" ini "[db] retry_base_ms"
setting_is circuit_cooldown_ms "'5000'" default "default (mongo_helper)"
setting_is app_name None default "default (libmongoc)"
setting_is w "'1'" uri "URI from"
setting_is readConcernLevel "'majority'" connection_options "[db] connection_options"
jcheck "'readPreference=secondaryPreferred' in d['effective_uri']" "'w=1' in d['effective_uri']"
# A configuration error: exit 3, naming the source.
run 3 env MONGO_MAX_POOL_SIZE=lots "$tool" --uri mongodb://h/db config
contains "$err" "mongo-helper: config: environment MONGO_MAX_POOL_SIZE='lots'" "config error"
run 3 env MONGO_MAX_POOL_SIZE=lots "$tool" --uri "$test_uri" ping
printf '[db]\nmongo_uri = mongodb://h/db\nconnection_options = noSuchOption=1\n' >"$tmp/bad.ini"
run 3 "$tool" -c "$tmp/bad.ini" config
contains "$err" "[db] connection_options names 'noSuchOption'" "unknown option"
run 3 "$tool" -c "$tmp/missing.ini" status

# ---- credentials never appear ---------------------------------------------------

pw=Zq7CliSecretPw
host_port=${test_uri#mongodb://}
host_port=${host_port%%/*}
host_port=${host_port##*@}
printf '[db]\nmongo_uri = mongodb://app:%s@%s/db\n' "$pw" "$host_port" >"$tmp/pw.ini"
printf '[db]\nmongo_uri = mongodb://app:%s@127.0.0.1:1/db\nconnection_options = "authMechanismProperties=AWS_SESSION_TOKEN:%s"\n' \
    "$pw" "$pw" >"$tmp/pw_down.ini"
no_password() { # WHAT: neither stdout nor stderr of the last run has $pw
    checks=$((checks + 1))
    ! grep -qF "$pw" "$tmp/out" "$tmp/err" || fail "$1 printed the password:
$(cat "$tmp/out" "$tmp/err")"
}
for source in arg cache ini uri parts; do
    for target in "$host_port" 127.0.0.1:1; do
        case $source in
        arg) pre=(env) && glob=(--uri "mongodb://app:$pw@$target/db") ;;
        cache) pre=(env "MONGO_CACHE_URI=mongodb://app:$pw@$target/db") && glob=() ;;
        ini) pre=(env) && glob=(-c "$tmp/pw.ini") && [ "$target" = "$host_port" ] || glob=(-c "$tmp/pw_down.ini") ;;
        uri) pre=(env "MONGO_URI=mongodb://app:$pw@$target/db") && glob=() ;;
        parts) pre=(env "MONGO_HOST=$target" MONGO_USERNAME=app "MONGO_PASSWORD=$pw" MONGO_DB=db) && glob=() ;;
        esac
        for cmd in "config" "config --json" "ping --timeout 1500" "status --timeout 1500 --json" \
            "stats --timeout 1500" "sessions count --timeout 1500" "metrics --timeout 1500"; do
            # shellcheck disable=SC2086
            "${pre[@]}" "$tool" "${glob[@]}" $cmd >"$tmp/out" 2>"$tmp/err"
            no_password "$source $target: $cmd"
        done
    done
done
# Error paths: an invalid URI, an empty one, a bad setting next to a password.
for bad in "mongodb://app:$pw@/db?" "mongodb://app:$pw@h/db?w=0&journal=true" "mongo://app:$pw@h/db"; do
    run 3 "$tool" --uri "$bad" config
    no_password "invalid URI $bad"
    run 3 env "MONGO_CACHE_URI=$bad" "$tool" status
    no_password "invalid MONGO_CACHE_URI"
done
run 3 env "MONGO_URI=mongodb://app:$pw@h/db" MONGO_WAIT_QUEUE_TIMEOUT_MS=0 "$tool" config
no_password "bad setting"
run 0 "$tool" -c "$tmp/pw_down.ini" config --json
no_password "credential option"
setting_is authMechanismProperties "'AWS_SESSION_TOKEN:****'" connection_options "[db] connection_options"

# ---- ping and status --------------------------------------------------------------

run 0 mh ping
contains "$out" "ok: " "ping"
run 0 mh ping -q
[ -z "$out" ] || fail "ping -q printed: $out"
run 0 mh ping --json
jcheck "d['ok'] is True" "d['round_trip_ms'] >= 0"
run 1 "$tool" --uri mongodb://127.0.0.1:1/db ping --timeout 500 --json
jcheck "d['ok'] is False" "d['error']['category'] == 'connection'"
contains "$err" "mongo-helper: connection: " "unreachable ping"
run 0 mh status --json
jcheck "d['reachable'] is True" "d['server']['version'] != ''" \
    "d['server']['topology'] in ('Single', 'ReplicaSet', 'Sharded')" \
    "d['circuit']['state'] == 'closed'" "d['database'] != ''" "d['uri_source'] == 'explicit URI argument'"
run 0 mh status
contains "$out" "reachable:  yes" "status"
run 1 "$tool" --uri mongodb://127.0.0.1:1/db status --timeout 500 --json
jcheck "d['reachable'] is False" "d['error']['category'] in ('connection', 'timeout')" \
    "d['circuit']['state'] == 'closed'"

# ---- ensure-indexes and stats -------------------------------------------------------

run 0 mh ensure-indexes --sessions-collection "$S" --cache-collection "$C" --events-collection "$E" --json
jcheck "d['sessions'] == '$S'" "d['cache'] == '$C'" "d['events'] == '$E'"
run 0 mh ensure-indexes --sessions-collection "$S" --cache-collection "$C" --events-collection "$E"
contains "$out" "sessions: $S ready" "ensure-indexes twice"
run 0 mh stats "$S" --json
jcheck "d['collection'] == '$S'" "d['nindexes'] >= 3" # _id, expiresAt TTL, userId
run 0 mh stats "$C" --json
jcheck "d['nindexes'] >= 2"
run 0 mh stats --json
jcheck "d['collections'] >= 3" "d['indexes'] >= 7"
run 0 mh stats "$S"
contains "$out" "nindexes" "stats text"
run 1 mh stats "${run_id}_nothing"
contains "$err" "mongo-helper: not_found: " "stats of a missing collection"
run 2 mh ensure-indexes --events-retention forever

# ---- sessions -------------------------------------------------------------------------

fx session "$S" alice && fx session "$S" alice && fx session "$S" alice && fx session "$S" bob
run 0 mh sessions count --sessions-collection "$S"
[ "$out" = 4 ] || fail "sessions count: expected 4, got $out"
run 0 mh sessions count --user alice --sessions-collection "$S" --json
jcheck "d['live_sessions'] == 3" "d['user'] == 'alice'"
run 0 mh sessions destroy-user alice --sessions-collection "$S" --json
jcheck "d['deleted'] == 3"
run 0 mh sessions count --user alice --sessions-collection "$S"
[ "$out" = 0 ] || fail "alice still has $out sessions"
run 0 mh sessions count --user bob --sessions-collection "$S"
[ "$out" = 1 ] || fail "bob's session went with alice's: $out"
run 0 mh sessions destroy-user nobody --sessions-collection "$S"
contains "$out" "0 sessions of nobody deleted" "destroy-user of nobody"
run 2 mh sessions destroy-user --sessions-collection "$S"
run 2 mh sessions count --sessions-collection 'bad$name'

# ---- cache -----------------------------------------------------------------------------

fx cache "$C" page:1 doc '{"html": "<p>hi</p>", "n": 3}'
fx cache "$C" blob bytes 'raw-bytes'
fx cache "$C" hits counter 41
run 0 mh cache get page:1 --cache-collection "$C"
jcheck "d == {'html': '<p>hi</p>', 'n': 3}"
run 0 mh cache get page:1 --cache-collection "$C" --json
jcheck "d['key'] == 'page:1'" "d['value']['n'] == 3"
run 0 mh cache get hits --cache-collection "$C"
[ "$out" = 41 ] || fail "counter: expected 41, got $out"
run 0 mh cache get blob --cache-collection "$C" --json
jcheck "d['value']['\$binary']['base64'] == 'cmF3LWJ5dGVz'"
run 1 mh cache get nothing-here --cache-collection "$C"
contains "$err" "mongo-helper: not_found: cache key 'nothing-here'" "cache miss"
run 0 mh cache delete page:1 --cache-collection "$C" --json
jcheck "d['deleted'] is True"
run 1 mh cache get page:1 --cache-collection "$C"
run 0 mh cache delete page:1 --cache-collection "$C"
contains "$out" "not found" "second delete"
run 2 mh cache clear --cache-collection "$C"
contains "$err" "--yes" "clear without --yes"
run 2 mh cache clear --prefix page: --yes --cache-collection "$C"
contains "$err" "--prefix is not supported" "clear --prefix"
run 0 mh cache get hits --cache-collection "$C" # --prefix and no --yes cleared nothing
run 0 mh cache clear --yes --cache-collection "$C" --json
jcheck "d['cleared'] is True"
run 1 mh cache get hits --cache-collection "$C"
run 1 mh cache get blob --cache-collection "$C"
run 2 mh cache get --cache-collection "$C"

# ---- events -----------------------------------------------------------------------------

fx event "$E" carol login 7200000  # two hours ago
fx event "$E" carol view 1800000   # 30 minutes ago
fx event "$E" carol logout 60000   # a minute ago
fx event "$E" dave login 30000
run 0 mh events tail --events-collection "$E"
[ "$(wc -l <<<"$out")" = 4 ] || fail "events tail: expected 4 lines, got: $out"
printf '%s\n' "$out" | "$py" -c '
import json, sys
ev = [json.loads(l) for l in sys.stdin]
ts = [e["timestamp"]["$date"] for e in ev]
assert ts == sorted(ts), "not oldest first: %r" % ts
assert [e["event_type"] for e in ev] == ["login", "view", "logout", "login"], ev
assert ev[0]["metadata"] == {"source": "cli_fixture"}, ev[0]
' || fail "events tail output: $out"
run 0 mh events tail --events-collection "$E" --user carol --since 1h
printf '%s\n' "$out" | "$py" -c '
import json, sys
ev = [json.loads(l) for l in sys.stdin]
assert [(e["user_id"], e["event_type"]) for e in ev] == [("carol", "view"), ("carol", "logout")], ev
' || fail "events tail --user --since: $out"
run 0 mh events tail --events-collection "$E" --type login -n 1
jcheck "d['user_id'] == 'dave'"
[ "$(wc -l <<<"$out")" = 1 ] || fail "-n 1 printed: $out"
run 0 mh events tail --events-collection "$E" --user nobody --since 2d
[ -z "$out" ] || fail "events of nobody: $out"

# --follow: new events arrive while it runs; other users' do not.  Against
# the test server and against a replica-set member (a change stream where
# the server has one, else polling).
follow_check() { # URI LABEL
    local uri=$1 label=$2 log=$tmp/follow_$2 pid
    "$tool" --uri "$uri" events tail --events-collection "$E" --user erin --follow \
        --poll-interval 100 >"$log.out" 2>"$log.err" &
    pid=$!
    bg_pids+=("$pid")
    sleep 1
    MONGO_CACHE_URI=$uri "$fixture" event "$E" frank ignored 0 || fail "fixture event ($label)"
    MONGO_CACHE_URI=$uri "$fixture" event "$E" erin "followed_$label" 0 || fail "fixture event ($label)"
    for _ in $(seq 1 150); do
        grep -q "followed_$label" "$log.out" && break
        kill -0 "$pid" 2>/dev/null || fail "events tail --follow ($label) exited: $(cat "$log.err")"
        sleep 0.1
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    checks=$((checks + 1))
    "$py" -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert [e["event_type"] for e in ev] == ["followed_" + sys.argv[2]], ev
assert ev[0]["user_id"] == "erin"
' "$log.out" "$label" || fail "events tail --follow ($label): $(cat "$log.out" "$log.err")"
    echo "test_cli: --follow on $label: ${3:-}$(head -c 200 "$log.err")"
}
follow_check "$test_uri" server
if [ -n "${MH_MOCK_SERVER_SCRIPT:-}" ]; then
    "$py" "$MH_MOCK_SERVER_SCRIPT" --host 127.0.0.1 --port 0 --port-file "$tmp/rs.port" \
        --replset rs0 >"$tmp/rs.log" 2>&1 &
    bg_pids+=("$!")
    for _ in $(seq 1 150); do [ -s "$tmp/rs.port" ] && break; sleep 0.1; done
    [ -s "$tmp/rs.port" ] || fail "replica-set test server did not start: $(cat "$tmp/rs.log")"
    rs_uri="mongodb://127.0.0.1:$(tr -dc 0-9 <"$tmp/rs.port")/mh_test"
    for _ in $(seq 1 50); do "$tool" --uri "$rs_uri" ping -q --timeout 500 2>/dev/null && break; sleep 0.1; done
    run 0 "$tool" --uri "$rs_uri" status --json
    jcheck "d['server']['topology'] == 'ReplicaSet'" "d['server']['set_name'] == 'rs0'"
    follow_check "$rs_uri" replset "stderr: "
fi

# ---- metrics ------------------------------------------------------------------------------

run 0 mh metrics
contains "$out" '# TYPE mongo_helper_operations_total counter' "metrics"
contains "$out" 'mongo_helper_operations_total{op="command"} 1' "metrics after one ping"
run 1 "$tool" --uri mongodb://127.0.0.1:1/db metrics --timeout 500
contains "$out" '# TYPE mongo_helper_operations_total counter' "metrics of an unreachable server"
contains "$err" "mongo-helper: connection: " "metrics of an unreachable server"

# ---- unreachable server: every command that connects fails with 1 ---------------------

for cmd in "stats" "ensure-indexes" "sessions count" "sessions destroy-user x" "cache get k" \
    "cache delete k" "cache clear --yes" "events tail"; do
    # shellcheck disable=SC2086
    run 1 "$tool" --uri mongodb://127.0.0.1:1/db --timeout 300 $cmd
    contains "$err" "mongo-helper: connection: " "$cmd on an unreachable server"
done

echo "test_cli: all $checks checks passed"
