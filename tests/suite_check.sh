#!/usr/bin/env bash
# Usage: tests/suite_check.sh
#
# Fails when a suite would be left out of the run or misnamed: each
# tests/test_<area>.c defines exactly one suite, <area>_suite, which
# tests/mh_test.h declares and tests/check_main.c lists (a suite that is
# defined but not listed would silently never run).  Run from the top
# directory by tests/run_checks.sh, before the suites.
set -euo pipefail

status=0
defined=""
for f in tests/test_*.c; do
  area=$(basename "$f" .c)
  area=${area#test_}
  suites=$(grep -oE '^[a-z0-9_]+_suite \(void\)$' "$f" | sed 's/ (void)$//' | tr '\n' ' ' || true)
  suites=${suites% }
  if [ "$suites" != "${area}_suite" ]; then
    echo "suite_check: $f must define exactly one suite, ${area}_suite (found: ${suites:-none})" >&2
    status=1
  fi
  defined="$defined ${area}_suite"
done
defined=$(echo $defined | tr ' ' '\n' | sort)
declared=$(grep -oE '^Suite \*[a-z0-9_]+_suite \(void\);' tests/mh_test.h \
             | sed -E 's/^Suite \*([a-z0-9_]+) .*/\1/' | sort)
listed=$(sed -n '/suites\[\]/,/};/p' tests/check_main.c | grep -oE '\b[a-z0-9_]+_suite\b' | sort)
for pair in "declared:tests/mh_test.h:$declared" "listed:tests/check_main.c:$listed"; do
  what=${pair%%:*}; rest=${pair#*:}; file=${rest%%:*}; names=${rest#*:}
  missing=$(comm -23 <(echo "$defined") <(echo "$names"))
  extra=$(comm -13 <(echo "$defined") <(echo "$names"))
  if [ -n "$missing" ]; then
    echo "suite_check: $file: suites not $what:" $missing >&2
    status=1
  fi
  if [ -n "$extra" ]; then
    echo "suite_check: $file: $what without a test file, or twice:" $extra >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "suite_check: $(echo "$defined" | wc -l) suites, each defined, declared and listed once"
exit $status
