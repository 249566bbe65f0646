#!/usr/bin/env bash
# Usage: tests/abi_check.sh HEADER SHARED_LIB STATIC_LIB
#
# The ABI is the header's functions: the shared library must export exactly
# them (no more: an internal name would become a promise; no less: a
# declared function would fail to link), and the static archive must define
# no other global symbol, so an application's own names never clash with
# the library's internal ones.
set -euo pipefail
header=$1 so=$2 ar=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declarations, comments removed without expanding #include.
cpp -fpreprocessed -P -dD "$header" 2>/dev/null |
  grep -oE '\bmongo_helper_[a-z0-9_]+ \(' | sed 's/ ($//' | sort -u >"$tmp/header"
nm -D --defined-only "$so" | awk '{print $NF}' | sort -u >"$tmp/shared"
nm -g --defined-only "$ar" | awk 'NF == 3 {print $3}' | sort -u >"$tmp/static"

status=0
for lib in shared static; do
  if ! diff -u "$tmp/header" "$tmp/$lib" >"$tmp/diff"; then
    echo "abi-check: the $lib library's global symbols differ from $header's functions" >&2
    echo "  (- declared but not defined, + defined but not declared):" >&2
    grep -E '^[-+][a-z]' "$tmp/diff" | sed 's/^/  /' >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "abi-check: $(wc -l <"$tmp/header") functions, exported exactly"
exit $status
