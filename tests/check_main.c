/* Runs every suite declared in mh_test.h, in that order (the library's
 * layer order); exits non-zero when any test failed.  A new test file adds
 * its suite to both lists. */
#include <stdlib.h>

#include "mh_test.h"

int
main (void)
{
   Suite *(*const suites[]) (void) = {
      redact_suite,   error_suite,     log_suite,       config_suite,   resilience_suite,
      security_suite, metrics_suite,   singleton_suite, crud_suite,     stream_suite,
      health_suite,   aggregate_suite, bulk_suite,      index_suite,    search_suite,
      ops_suite,      sessions_suite,  cache_suite,     eventlog_suite,
   };
   SRunner *sr = srunner_create (NULL);
   int failed;

   for (size_t i = 0; i < sizeof suites / sizeof *suites; i++) {
      srunner_add_suite (sr, suites[i]());
   }
   srunner_run_all (sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
   failed = srunner_ntests_failed (sr);
   srunner_free (sr);
   return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
