/* Runs every suite declared in mh_test.h, in that order (the library's
 * layer order); exits non-zero when any test failed.  A new test file adds
 * its suite to both lists. */
#include <stdlib.h>

#include "mh_test.h"

int
main (void)
{
   /* By layer of the map in mongo_helper.c (its number on the right). */
   /* clang-format off */
   Suite *(*const suites[]) (void) = {
      redact_suite, redact_random_suite, crypto_suite, /* 0 */
      error_suite, log_suite,                          /* 1 */
      keyring_suite,                                   /* 2 */
      config_suite, config_settings_suite,             /* 3 */
      resilience_suite, resilience_outages_suite, security_suite,
      depth_suite, depth_levels_suite, limits_suite, limits_caps_suite, /* 4 */
      metrics_suite,                                   /* 5 */
      singleton_suite,                                 /* 6: mongo_helper.c */
      crud_suite, stored_suite, stream_suite, health_suite,          /* 7 */
      aggregate_suite, bulk_suite, index_suite, search_suite,
      gridfs_suite, watch_suite, stats_suite,          /* 8 */
      sessions_suite, session_races_suite, session_round_trips_suite,
      sessions_sealed_suite, sessions_rekey_suite, sessions_keys_suite,
      cache_suite, cache_lease_suite, eventlog_suite, web_limits_suite,
      cache_sealed_suite,
      concurrent_suite,                                /* 9 */
      event_writer_suite, event_writer_fork_suite,
      fork_suite, fork_inherit_suite, fork_log_sink_suite, /* 10 */
   };
   /* clang-format on */
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
