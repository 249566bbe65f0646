#!/usr/bin/env bash
# Usage: tests/env_check.sh
#
# Fails when the library reads an environment variable that
# mh_test_clean_env (tests/mh_test.c) does not unset: such a variable, set
# in the shell that runs `make check`, would reach every test.  The
# library's variables are the string literals "MONGO_..." of its sources
# (getenv/mh_env arguments and the settings tables of src/config.c) and
# any other literal passed to getenv, secure_getenv or mh_env.  Run from
# the top directory by tests/run_checks.sh, before the suites.
set -euo pipefail

lib_srcs=(mongo_helper.c src/*.c src/*.h)
lib=$( { grep -ohE '"MONGO_[A-Z0-9_]+"' "${lib_srcs[@]}";
         grep -ohE '\b(secure_)?getenv *\( *"[^"]+"|\bmh_env *\( *"[^"]+"' "${lib_srcs[@]}" \
           | grep -oE '"[^"]+"'; } | tr -d '"' | sort -u)
# The literals of mh_test_clean_env's body.
cleaned=$(sed -n '/^mh_test_clean_env (void)$/,/^}$/p' tests/mh_test.c \
            | grep -oE '"[A-Z][A-Z0-9_]*"' | tr -d '"' | sort -u)

if [ -z "$lib" ] || [ -z "$cleaned" ]; then
  echo "env_check: found no variable names (library: ${#lib}, cleaner: ${#cleaned} bytes)" >&2
  exit 1
fi
missing=$(comm -23 <(echo "$lib") <(echo "$cleaned"))
extra=$(comm -13 <(echo "$lib") <(echo "$cleaned"))
if [ -n "$extra" ]; then
  echo "env_check: note: mh_test_clean_env unsets variables the library no longer reads:" $extra
fi
if [ -n "$missing" ]; then
  echo "env_check: the library reads variables mh_test_clean_env does not unset:" $missing >&2
  echo "env_check: add them to the list in tests/mh_test.c" >&2
  exit 1
fi
echo "env_check: mh_test_clean_env unsets all $(echo "$lib" | wc -l) variables the library reads"
