#!/usr/bin/env bash
# Usage: tests/with_server.sh CMD ARGS...
#
# Runs CMD against a MongoDB server.  If MONGO_TEST_URI is already set, CMD is
# simply exec'd.  Otherwise tests/mock_server.py (a MongoDB-wire-compatible
# mock, see that file) is started on 127.0.0.1 on a free port and CMD runs with
#   MONGO_TEST_URI=mongodb://127.0.0.1:PORT/mh_test
#   MH_MOCK_SERVER=1
#   MH_MOCK_SERVER_SCRIPT=<absolute path of mock_server.py>
# The server is always stopped afterwards; the exit status is CMD's.
# Optional: MH_MOCK_SERVER_ARGS (extra mock_server.py options, word-split),
#           MH_MOCK_PYTHON (interpreter, default /usr/bin/python3).
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

if [ -n "${MONGO_TEST_URI:-}" ]; then
    exec "$@"
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/mock_server.py"
python="${MH_MOCK_PYTHON:-/usr/bin/python3}"

tmpdir="$(mktemp -d "${TMPDIR:-/tmp}/mh_mock.XXXXXX")"
log="$tmpdir/server.log"
portfile="$tmpdir/port"
server_pid=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        # Give it 5 s to exit cleanly, then SIGKILL.
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmpdir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$python" "$script" --host 127.0.0.1 --port 0 --port-file "$portfile" \
    ${MH_MOCK_SERVER_ARGS:-} >"$log" 2>&1 &
server_pid=$!

port=""
ready=0
for _ in $(seq 1 150); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        break
    fi
    if [ -z "$port" ] && [ -s "$portfile" ]; then
        port="$(tr -dc '0-9' <"$portfile")"
    fi
    if [ -n "$port" ] && "$python" - "$port" <<'EOF' >/dev/null 2>&1
import socket, struct, sys
import bson
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=2)
body = struct.pack("<I", 0) + b"\x00" + bson.BSON.encode({"ping": 1, "$db": "admin"})
s.sendall(struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body)
hdr = s.recv(16)
assert len(hdr) == 16
EOF
    then
        ready=1
        break
    fi
    sleep 0.1
done

if [ "$ready" != 1 ]; then
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "with_server.sh: mock MongoDB server did not become ready within 15 s" >&2
    else
        echo "with_server.sh: mock MongoDB server exited during startup" >&2
    fi
    echo "---- $log ----" >&2
    cat "$log" >&2 || true
    exit 1
fi

export MONGO_TEST_URI="mongodb://127.0.0.1:${port}/mh_test"
export MH_MOCK_SERVER=1
export MH_MOCK_SERVER_SCRIPT="$script"

set +e
"$@"
cmd_rc=$?
set -e

if [ "$cmd_rc" -ne 0 ]; then
    echo "with_server.sh: command failed (exit $cmd_rc); mock server log tail:" >&2
    tail -n 50 "$log" >&2 || true
fi
exit "$cmd_rc"
