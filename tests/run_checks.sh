#!/usr/bin/env bash
# Runs the Check binary (under valgrind when MH_VALGRIND=1) and prints the
# number of skipped tests with their reasons.  Exit status: the binary's,
# or 1 when a check run first finds the suites unsound: a variable the
# library reads that the environment cleaner misses (tests/env_check.sh),
# or a suite left out of the run (tests/suite_check.sh).
set -u
bin=$1
bash tests/env_check.sh || exit 1
bash tests/suite_check.sh || exit 1
skips=$(mktemp)
export MH_SKIP_LOG=$skips
status=0
if [ "${MH_VALGRIND:-0}" = 1 ]; then
  # Check forks each test; valgrind follows forked children by itself.
  # Programs a test execs (a test server) are not traced.  Definite and
  # possible leaks and every memory error fail the run.
  valgrind --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,possible --show-leak-kinds=definite,possible \
    --suppressions=tests/valgrind.supp --trace-children=no "$bin" || status=$?
else
  "$bin" || status=$?
fi
n=$(wc -l < "$skips")
echo "Skipped tests: $n"
[ "$n" -gt 0 ] && sed 's/^/  skipped: /' "$skips"
rm -f "$skips"
exit $status
