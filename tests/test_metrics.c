/* src/metrics.c: the Prometheus text snapshot (no server needed) and the
 * command_metrics setting (live).  The
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

/* The value of a dotted path of the JSON snapshot; -1 when absent. */
static int64_t
metric (const char *dotted)
{
   char *json = mongo_helper_metrics_json_dup (&err);
   bson_t *m;
   bson_iter_t it;
   int64_t n = -1;

   MH_ASSERT_OK (json != NULL, err);
   m = bson_new_from_json ((const uint8_t *) json, -1, NULL);
   ck_assert_ptr_nonnull (m);
   if (bson_iter_init (&it, m) && bson_iter_find_descendant (&it, dotted, &it)) {
      n = bson_iter_as_int64 (&it);
   }
   bson_destroy (m);
   bson_free (json);
   return n;
}

static bool
ping (void)
{
   bson_t *cmd = BCON_NEW ("ping", BCON_INT32 (1));
   bool ok = mongo_helper_read_command (cmd, 0, NULL, &err);

   bson_destroy (cmd);
   return ok;
}

START_TEST (command_metrics_are_off_by_default_and_count_every_command_when_on)
{
   mongo_helper_metrics_reset ();
   MH_ASSERT_OK (ping (), err);
   MH_ASSERT_OK (ping (), err);
   /* Per operation: always. */
   ck_assert_int_eq (metric ("operations.read_command.ok"), 2);
   /* Per command: not without the setting (no APM on the pool). */
   ck_assert_int_eq (metric ("commands.ping.succeeded"), -1);

   mongo_helper_shutdown ();
   setenv ("MONGO_COMMAND_METRICS", "true", 1);
   mongo_helper_metrics_reset ();
   MH_ASSERT_OK (ping (), err);
   MH_ASSERT_OK (ping (), err);
   ck_assert_int_eq (metric ("commands.ping.succeeded"), 2);
   ck_assert_int_eq (metric ("commands.ping.started"), 2);
   ck_assert_int_ge (metric ("commands.ping.duration_us_sum"), 0);

   /* Not a boolean: a configuration error naming its source. */
   mongo_helper_shutdown ();
   setenv ("MONGO_COMMAND_METRICS", "sometimes", 1);
   MH_ASSERT_FAILS_WITH (ping (), MONGO_HELPER_ERROR_CONFIG);
   ck_assert_msg (strstr (err.message, "MONGO_COMMAND_METRICS"), "%s", err.message);
}
END_TEST

Suite *
metrics_suite (void)
{
   Suite *s = suite_create ("metrics");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, prometheus_text_reports_needed_size_when_the_buffer_is_small);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, command_metrics_are_off_by_default_and_count_every_command_when_on);
   suite_add_tcase (s, live);
   return s;
}
