/* src/resilience.c: retries, circuit breaker and fault injection, with the
 * metrics that count them: the settings and the classification of errors,
 * then the shared test server's `configureFailPoint failCommand`
 * (restricted to this process by appName), pool exhaustion and 64 threads
 * of mixed operations.  Outages of servers the tests start themselves are
 * in test_resilience_outages.c; the helpers both use in
 * resilience_fixture.h. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mh_test.h"

#include "resilience_fixture.h"

/* Runs an admin command through a pooled client (configureFailPoint,
 * mockSetRole), outside the execution path so it is neither retried nor
 * counted. */
static void
admin_command (const bson_t *cmd)
{
   mongo_helper_conn_t *conn = mongo_helper_acquire (&err);
   bson_error_t e;
   bool ok;

   MH_ASSERT_OK (conn != NULL, err);
   ok =
      mongoc_client_command_simple (mongo_helper_conn_client (conn), "admin", cmd, NULL, NULL, &e);
   ck_assert_msg (ok, "admin command failed: %s", e.message);
   mongo_helper_release (conn);
}

/* A failCommand fail point that fires only for this process's clients. */
static void
fail_point (const char *command, int times, const char *data_json)
{
   char json[512];
   bson_t cmd;
   bson_error_t e;

   snprintf (json,
             sizeof json,
             "{\"configureFailPoint\": \"failCommand\", \"mode\": {\"times\": %d},"
             " \"data\": {\"failCommands\": [\"%s\"], \"appName\": \"%s\", %s}}",
             times,
             command,
             app_name,
             data_json);
   ck_assert_msg (bson_init_from_json (&cmd, json, -1, &e), "%s", e.message);
   admin_command (&cmd);
   bson_destroy (&cmd);
}

static void
fail_point_off (void)
{
   bson_t *cmd = BCON_NEW ("configureFailPoint", "failCommand", "mode", "off");
   admin_command (cmd);
   bson_destroy (cmd);
}

/* ---- core: configuration and classification ---------------------------- */

START_TEST (retry_settings_default_then_ini_then_environment)
{
   mongo_helper_config_t *cfg;
   mongo_helper_retry_policy_t pol;
   const char *ini;

   cfg = mongo_helper_config_new ("/dev/null", "mongodb://h/db", &err);
   MH_ASSERT_OK (cfg != NULL, err);
   mongo_helper_config_retry_policy (cfg, &pol);
   ck_assert_int_eq (pol.attempts, MONGO_HELPER_DEFAULT_RETRY_ATTEMPTS);
   ck_assert_int_eq (pol.base_ms, MONGO_HELPER_DEFAULT_RETRY_BASE_MS);
   ck_assert_int_eq (pol.max_ms, MONGO_HELPER_DEFAULT_RETRY_MAX_MS);
   ck_assert_int_eq (pol.circuit_threshold, MONGO_HELPER_DEFAULT_CIRCUIT_THRESHOLD);
   ck_assert_int_eq (pol.circuit_cooldown_ms, MONGO_HELPER_DEFAULT_CIRCUIT_COOLDOWN_MS);
   mongo_helper_config_destroy (cfg);

   ini = mh_test_write_ini ("[db]\nretry_attempts = 5\nretry_base_ms = 20\n"
                            "retry_max_ms = 400\ncircuit_failure_threshold = 7\n"
                            "circuit_cooldown_ms = 900\n");
   setenv ("MONGO_RETRY_ATTEMPTS", "2", 1);
   setenv ("MONGO_CIRCUIT_COOLDOWN_MS", "1500", 1);
   cfg = mongo_helper_config_new (ini, "mongodb://h/db", &err);
   MH_ASSERT_OK (cfg != NULL, err);
   mongo_helper_config_retry_policy (cfg, &pol);
   ck_assert_int_eq (pol.attempts, 2); /* environment wins */
   ck_assert_int_eq (pol.base_ms, 20); /* INI */
   ck_assert_int_eq (pol.max_ms, 400);
   ck_assert_int_eq (pol.circuit_threshold, 7);
   ck_assert_int_eq (pol.circuit_cooldown_ms, 1500);
   mongo_helper_config_destroy (cfg);

   setenv ("MONGO_RETRY_ATTEMPTS", "0", 1);
   ck_assert_ptr_null (mongo_helper_config_new (ini, "mongodb://h/db", &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONFIG);
   ck_assert_ptr_nonnull (strstr (err.message, "MONGO_RETRY_ATTEMPTS"));
   unsetenv ("MONGO_RETRY_ATTEMPTS");
   setenv ("MONGO_RETRY_MAX_MS", "lots", 1);
   ck_assert_ptr_null (mongo_helper_config_new (ini, "mongodb://h/db", &err));
   ck_assert_ptr_nonnull (strstr (err.message, "MONGO_RETRY_MAX_MS='lots'"));
}
END_TEST

START_TEST (only_network_selection_and_not_primary_errors_are_transient)
{
   bson_error_t e = {0};
   static const uint32_t transient[] = {10107, 13435, 11600, 11602, 189, 91, 13436};
   static const uint32_t permanent[] = {11000, 121, 2, 9, 59, 50, 13, 18};

   e.domain = MONGOC_ERROR_STREAM;
   e.code = MONGOC_ERROR_STREAM_SOCKET;
   ck_assert (mongo_helper_error_is_transient (&e));
   e.domain = MONGOC_ERROR_SERVER_SELECTION;
   e.code = MONGOC_ERROR_SERVER_SELECTION_FAILURE;
   ck_assert (mongo_helper_error_is_transient (&e));
   for (size_t i = 0; i < sizeof transient / sizeof *transient; i++) {
      e.domain = MONGOC_ERROR_SERVER;
      e.code = transient[i];
      ck_assert_msg (mongo_helper_error_is_transient (&e), "code %u", transient[i]);
   }
   for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++) {
      e.domain = MONGOC_ERROR_SERVER;
      e.code = permanent[i];
      ck_assert_msg (!mongo_helper_error_is_transient (&e), "code %u", permanent[i]);
   }
   /* A driver code numerically equal to a server code is not transient. */
   e.domain = MONGOC_ERROR_COMMAND;
   e.code = 91;
   ck_assert (!mongo_helper_error_is_transient (&e));
   e.domain = MONGOC_ERROR_PROTOCOL;
   e.code = MONGOC_ERROR_PROTOCOL_INVALID_REPLY;
   ck_assert (!mongo_helper_error_is_transient (&e));
   ck_assert (!mongo_helper_error_is_transient (NULL));
}
END_TEST

START_TEST (max_time_option_is_appended_once_and_validated)
{
   bson_t opts = BSON_INITIALIZER;
   bson_iter_t it;

   MH_ASSERT_OK (mongo_helper_opts_set_max_time (&opts, 250, &err), err);
   ck_assert (bson_iter_init_find (&it, &opts, "maxTimeMS"));
   ck_assert_int_eq (bson_iter_int32 (&it), 250);
   ck_assert (!mongo_helper_opts_set_max_time (&opts, 300, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (!mongo_helper_opts_set_max_time (&opts, 0, &err));
   ck_assert (!mongo_helper_opts_set_max_time (NULL, 10, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (&opts);
}
END_TEST

/* ---- live: the shared server with fail points -------------------------- */

START_TEST (not_primary_error_is_retried_for_reads_with_backoff)
{
   bson_t *cmd = BCON_NEW ("ping", BCON_INT32 (1));
   bson_t reply;
   bson_iter_t it;

   MH_ASSERT_OK (run_ping (), err); /* connect before arming the fail point */
   mongo_helper_metrics_reset ();
   fail_point ("ping", 2, "\"errorCode\": 10107");
   MH_ASSERT_OK (mongo_helper_read_command (cmd, 0, &reply, &err), err);
   ck_assert (bson_iter_init_find (&it, &reply, "ok"));
   ck_assert (bson_iter_as_double (&it) == 1.0);
   bson_destroy (&reply);
   ck_assert_int_eq (metric ("operations.read_command.calls"), 1);
   ck_assert_int_eq (metric ("operations.read_command.retries"), 2);
   ck_assert_int_eq (metric ("operations.read_command.ok"), 1);
   /* APM saw each attempt: two failed pings, then one that succeeded. */
   ck_assert_int_eq (metric ("commands.ping.started"), 3);
   ck_assert_int_eq (metric ("commands.ping.failed"), 2);
   ck_assert_int_eq (metric ("commands.ping.succeeded"), 1);
   bson_destroy (cmd);
}
END_TEST

START_TEST (plain_write_is_not_retried_on_not_primary)
{
   MH_ASSERT_OK (run_ping (), err);
   fail_point ("ping", 2, "\"errorCode\": 10107");
   ck_assert (!run_ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 10107);
   /* The second failure is still armed: the first call ran exactly once. */
   ck_assert (!run_ping ());
   ck_assert_int_eq (err.code, 10107);
   MH_ASSERT_OK (run_ping (), err);
   ck_assert_int_eq (metric ("operations.command.retries"), 0);
}
END_TEST

START_TEST (duplicate_key_is_never_retried)
{
   bson_t *cmd = BCON_NEW ("ping", BCON_INT32 (1));

   MH_ASSERT_OK (run_ping (), err);
   mongo_helper_metrics_reset ();
   fail_point ("ping", 2, "\"errorCode\": 11000");
   ck_assert (!mongo_helper_read_command (cmd, 0, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_DUPLICATE_KEY);
   ck_assert_int_eq (metric ("operations.read_command.retries"), 0);
   ck_assert_int_eq (metric ("operations.read_command.errors.duplicate_key"), 1);
   ck_assert_int_eq (metric ("commands.ping.started"), 1);
   fail_point_off ();
   bson_destroy (cmd);
}
END_TEST

START_TEST (slow_server_fails_with_timeout_category)
{
   int64_t t0;

   setenv ("MONGO_SOCKET_TIMEOUT_MS", "400", 1);
   MH_ASSERT_OK (run_ping (), err);
   fail_point ("ping", 1, "\"blockConnection\": true, \"blockTimeMS\": 1500");
   t0 = now_ms ();
   ck_assert (!run_ping ());
   ck_assert_msg (err.category == MONGO_HELPER_ERROR_TIMEOUT,
                  "expected timeout, got %s: %s",
                  mongo_helper_category_name (err.category),
                  err.message);
   ck_assert_ptr_nonnull (strstr (err.message, "in time"));
   ck_assert_int_lt (now_ms () - t0, 1400);
   mh_test_sleep_ms (1200); /* let the blocked server thread finish */
   MH_ASSERT_OK (run_ping (), err);
}
END_TEST

START_TEST (max_time_ms_expiry_is_a_timeout_and_not_retried)
{
   bson_t *cmd = BCON_NEW ("ping", BCON_INT32 (1));

   MH_ASSERT_OK (run_ping (), err);
   mongo_helper_metrics_reset ();
   fail_point ("ping", 1, "\"errorCode\": 50");
   ck_assert (!mongo_helper_read_command (cmd, 100, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_TIMEOUT);
   ck_assert_int_eq (err.code, 50);
   ck_assert_int_eq (metric ("operations.read_command.retries"), 0);
   bson_destroy (cmd);
}
END_TEST

START_TEST (connection_closed_mid_reply_is_retried_for_reads_and_reported_for_writes)
{
   bson_t *find = BCON_NEW ("find", BCON_UTF8 (mh_test_collection ("closed")));

   MH_ASSERT_OK (run_ping (), err);
   mongo_helper_metrics_reset ();
   fail_point ("find", 1, "\"closeConnection\": true");
   MH_ASSERT_OK (mongo_helper_read_command (find, 0, NULL, &err), err);
   ck_assert_int_eq (metric ("operations.read_command.retries"), 1);

   fail_point ("ping", 1, "\"closeConnection\": true");
   ck_assert (!run_ping ());
   ck_assert_msg (err.category == MONGO_HELPER_ERROR_CONNECTION,
                  "expected connection, got %s: %s",
                  mongo_helper_category_name (err.category),
                  err.message);
   MH_ASSERT_OK (run_ping (), err);
   bson_destroy (find);
}
END_TEST

/* ---- pool exhaustion ---------------------------------------------------- */

/* Holds a pooled client for the whole of a slow server command; long
 * enough under valgrind too, where everything takes several times longer. */
static int slow_call_ms;

static void *
slow_caller (void *arg)
{
   mongo_helper_error_t e;
   bson_t *cmd = BCON_NEW ("sleep", BCON_INT32 (1), "millis", BCON_INT32 (slow_call_ms));

   (void) arg;
   mongo_helper_command (cmd, NULL, &e);
   bson_destroy (cmd);
   return NULL;
}

START_TEST (pool_exhausted_by_slow_calls_makes_waiters_time_out)
{
   const bool slow = getenv ("MH_VALGRIND") != NULL;
   pthread_t t[2];
   mongo_helper_pool_stats_t st;
   int64_t t0, took, deadline;

   slow_call_ms = slow ? 8000 : 1500;
   setenv ("MONGO_MAX_POOL_SIZE", "2", 1);
   setenv ("MONGO_WAIT_QUEUE_TIMEOUT_MS", "300", 1);
   for (int i = 0; i < 2; i++) {
      ck_assert_int_eq (pthread_create (&t[i], NULL, slow_caller, NULL), 0);
   }
   /* Both callers hold their client once the gauge says so: wait for that
    * rather than for a fixed time, which a loaded machine overruns. */
   deadline = now_ms () + slow_call_ms / 2;
   do {
      mh_test_sleep_ms (20);
      mongo_helper_pool_stats (&st);
   } while (st.in_use < 2 && now_ms () < deadline);
   ck_assert_int_eq (st.in_use, 2);
   t0 = now_ms ();
   ck_assert (!run_ping ());
   took = now_ms () - t0;
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_TIMEOUT);
   ck_assert_ptr_nonnull (strstr (err.message, "no pooled connection"));
   ck_assert_msg (took >= 250 && took < (slow ? 3000 : 1200), "waited %lld ms", (long long) took);
   mongo_helper_pool_stats (&st);
   ck_assert_uint_eq (st.wait_timeouts, 1);
   ck_assert_int_eq (st.waiting, 0);
   for (int i = 0; i < 2; i++) {
      pthread_join (t[i], NULL);
   }
   mongo_helper_pool_stats (&st);
   ck_assert_int_eq (st.in_use, 0); /* thread exit gave the clients back */
   MH_ASSERT_OK (run_ping (), err);
}
END_TEST

/* ---- 64 threads ---------------------------------------------------------- */

#define MIXED_THREADS 64
static const char *mixed_coll;
static atomic_long mixed_inserted, mixed_calls, mixed_failed, mixed_acquires;

static void *
mixed_worker (void *arg)
{
   intptr_t id = (intptr_t) arg;
   int64_t until = now_ms () + 2000;
   mongo_helper_error_t e;
   int64_t n = 0;

   while (now_ms () < until) {
      bool ok;
      if (n % 3 == 0) {
         bson_t *cmd = BCON_NEW ("insert",
                                 BCON_UTF8 (mixed_coll),
                                 "documents",
                                 "[",
                                 "{",
                                 "_id",
                                 BCON_INT64 (id * 1000000 + n),
                                 "}",
                                 "]");
         ok = mongo_helper_command (cmd, NULL, &e);
         atomic_fetch_add (&mixed_inserted, ok ? 1 : 0);
         bson_destroy (cmd);
      } else if (n % 3 == 1) {
         bson_t *cmd = BCON_NEW ("count", BCON_UTF8 (mixed_coll));
         ok = mongo_helper_read_command (cmd, 5000, NULL, &e);
         bson_destroy (cmd);
      } else {
         mongo_helper_conn_t *c = mongo_helper_acquire (&e);
         ok = c != NULL;
         atomic_fetch_add (&mixed_acquires, 1);
         mongo_helper_release (c);
      }
      atomic_fetch_add (&mixed_calls, 1);
      atomic_fetch_add (&mixed_failed, ok ? 0 : 1);
      n++;
   }
   return NULL;
}

START_TEST (sixty_four_threads_of_mixed_operations_add_up)
{
   pthread_t t[MIXED_THREADS];
   mongo_helper_pool_stats_t st;
   bson_t *count;
   bson_t reply;
   bson_iter_t it;
   int64_t command_calls, read_calls;

   setenv ("MONGO_MAX_POOL_SIZE", "80", 1);
   mixed_coll = mh_test_collection ("mixed");
   MH_ASSERT_OK (run_ping (), err);
   mongo_helper_metrics_reset ();
   for (intptr_t i = 0; i < MIXED_THREADS; i++) {
      ck_assert_int_eq (pthread_create (&t[i], NULL, mixed_worker, (void *) i), 0);
   }
   for (int i = 0; i < MIXED_THREADS; i++) {
      pthread_join (t[i], NULL);
   }
   ck_assert_int_eq (atomic_load (&mixed_failed), 0);
   ck_assert_int_gt (atomic_load (&mixed_inserted), MIXED_THREADS);
   count = BCON_NEW ("count", BCON_UTF8 (mixed_coll));
   MH_ASSERT_OK (mongo_helper_read_command (count, 0, &reply, &err), err);
   ck_assert (bson_iter_init_find (&it, &reply, "n"));
   ck_assert_int_eq (bson_iter_as_int64 (&it), atomic_load (&mixed_inserted));
   bson_destroy (&reply);
   bson_destroy (count);
   /* Metrics agree with what the threads did. */
   command_calls = metric ("operations.command.calls");
   read_calls = metric ("operations.read_command.calls");
   ck_assert_int_eq (command_calls, atomic_load (&mixed_inserted));
   ck_assert_int_eq (metric ("commands.insert.succeeded"), atomic_load (&mixed_inserted));
   ck_assert_int_eq (command_calls + (read_calls - 1 /* the count above */) +
                        atomic_load (&mixed_acquires),
                     atomic_load (&mixed_calls));
   ck_assert_int_eq (metric ("commands.count.succeeded"), read_calls);
   mongo_helper_pool_stats (&st);
   /* One client per worker thread (kept until it exited) plus each acquire. */
   ck_assert_uint_eq (st.checkouts, MIXED_THREADS + atomic_load (&mixed_acquires));
   ck_assert_int_eq (st.in_use, 1); /* this thread's own client */
   ck_assert_int_eq (st.waiting, 0);
}
END_TEST

Suite *
resilience_suite (void)
{
   Suite *s = suite_create ("resilience");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, retry_settings_default_then_ini_then_environment);
   tcase_add_test (core, only_network_selection_and_not_primary_errors_are_transient);
   tcase_add_test (core, max_time_option_is_appended_once_and_validated);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, not_primary_error_is_retried_for_reads_with_backoff);
   tcase_add_test (live, plain_write_is_not_retried_on_not_primary);
   tcase_add_test (live, duplicate_key_is_never_retried);
   tcase_add_test (live, slow_server_fails_with_timeout_category);
   tcase_add_test (live, max_time_ms_expiry_is_a_timeout_and_not_retried);
   tcase_add_test (live, connection_closed_mid_reply_is_retried_for_reads_and_reported_for_writes);
   tcase_add_test (live, pool_exhausted_by_slow_calls_makes_waiters_time_out);
   tcase_add_test (live, sixty_four_threads_of_mixed_operations_add_up);
   suite_add_tcase (s, live);
   return s;
}
