/* Runs every suite; exits non-zero when any test failed. */
#include <stdlib.h>

#include "mh_test.h"

/* Suites of later areas are weak, so each area's test file adds its suite
 * without editing this list. */
#define MH_AREA_SUITES(X) \
   X (crud_suite)         \
   X (ops_suite)          \
   X (sessions_suite)     \
   X (cache_suite)        \
   X (eventlog_suite)     \
   X (resilience_suite)   \
   X (security_suite)
#define MH_DECLARE_WEAK(name) Suite *name (void) __attribute__ ((weak));
MH_AREA_SUITES (MH_DECLARE_WEAK)

int
main (void)
{
   SRunner *sr = srunner_create (config_suite ());
   int failed;

   srunner_add_suite (sr, singleton_suite ());
   srunner_add_suite (sr, live_suite ());
#define MH_ADD_IF_LINKED(name)         \
   if (name) {                         \
      srunner_add_suite (sr, name ()); \
   }
   MH_AREA_SUITES (MH_ADD_IF_LINKED)
   srunner_run_all (sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
   failed = srunner_ntests_failed (sr);
   srunner_free (sr);
   return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
