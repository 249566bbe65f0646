#!/usr/bin/env bash
# Usage: tests/layer_check.sh CORE_SOURCE OBJECT...
#
# Checks the layering that CORE_SOURCE's opening map declares, on the
# compiled objects, so the compiler's output and not a reading of the code
# is the judge: every internal (mh_*) symbol an object uses must be defined
# in the same object, in a lower layer, or in its own layer's shared file
# (marked * in the map).
set -euo pipefail
core=$1; shift
declare -A layer shared
cur=""
# Map lines look like " *   7  src/crud.c*   ..." or " *      src/stream.c  ...".
while IFS= read -r line; do
  if [[ $line =~ ^\ \*\ +([0-9]+)\ +([A-Za-z_./]+\.c)(\*?) ]]; then
    cur=${BASH_REMATCH[1]}; f=${BASH_REMATCH[2]}; star=${BASH_REMATCH[3]}
  elif [[ -n $cur && $line =~ ^\ \*\ {6}([A-Za-z_./]+\.c)(\*?) ]]; then
    f=${BASH_REMATCH[1]}; star=${BASH_REMATCH[2]}
  else
    [[ $line == " */" ]] && break
    continue
  fi
  layer[$(basename "$f" .c)]=$cur
  [ -n "$star" ] && shared[$cur]=$(basename "$f" .c)
done <"$core"

declare -A owner
for o in "$@"; do
  n=$(basename "$o" .o)
  [ -n "${layer[$n]:-}" ] || { echo "layer-check: $n is not in the map of $core" >&2; exit 1; }
  for s in $(nm --defined-only "$o" | awk '$2 ~ /[TtDdBbRr]/ && $3 ~ /^mh_/ {print $3}'); do
    owner[$s]=$n
  done
done
bad=0
for o in "$@"; do
  n=$(basename "$o" .o); l=${layer[$n]}
  for s in $(nm -u "$o" | awk '$2 ~ /^mh_/ {print $2}'); do
    d=${owner[$s]:-}
    if [ -z "$d" ]; then
      echo "layer-check: $n uses $s, which no object defines" >&2; bad=1; continue
    fi
    dl=${layer[$d]}
    if [ "$dl" -lt "$l" ] || [ "${shared[$l]:-}" = "$d" ]; then
      continue
    fi
    echo "layer-check: $n (layer $l) calls $s in $d (layer $dl): call down, or through layer $l's shared file" >&2
    bad=1
  done
done
[ "$bad" = 0 ] && echo "layer-check: $# objects, every call goes down a layer or to its layer's shared file"
exit $bad
