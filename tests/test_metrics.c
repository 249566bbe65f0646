/* src/metrics.c: the Prometheus text snapshot.  No server needed.  The
 * counters' agreement with real traffic (64 threads of mixed operations)
 * is checked in test_resilience.c, with its fail points and pool limits. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

START_TEST (prometheus_text_reports_needed_size_when_the_buffer_is_small)
{
   char small[16];
   size_t needed = 0;
   char *buf;

   ck_assert (!mongo_helper_metrics_prometheus (small, sizeof small, &needed, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert_uint_gt (needed, sizeof small);
   ck_assert_str_eq (small, "");
   ck_assert (!mongo_helper_metrics_prometheus (NULL, 0, &needed, &err));
   buf = malloc (needed + 256);
   MH_ASSERT_OK (mongo_helper_metrics_prometheus (buf, needed + 256, &needed, &err), err);
   ck_assert_uint_eq (strlen (buf) + 1, needed);
   ck_assert_ptr_nonnull (strstr (buf, "# TYPE mongo_helper_pool_in_use gauge\n"));
   ck_assert_ptr_nonnull (strstr (buf, "mongo_helper_circuit_state 0\n"));
   free (buf);
}
END_TEST

Suite *
metrics_suite (void)
{
   Suite *s = suite_create ("metrics");
   TCase *core = tcase_create ("core");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, prometheus_text_reports_needed_size_when_the_buffer_is_small);
   suite_add_tcase (s, core);
   return s;
}
