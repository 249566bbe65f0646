/* src/resilience.c: retries, circuit breaker and fault injection, with the
 * metrics that count them.
 *
 * Faults come from three places, all on 127.0.0.1: the shared test server's
 * `configureFailPoint failCommand` (restricted to this process by appName),
 * test servers this file starts itself from $MH_MOCK_SERVER_SCRIPT (killed,
 * restarted, stepped down), and a tiny in-process socket server that
 * answers garbage. */
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

static mongo_helper_error_t err;

/* ---- helpers ---------------------------------------------------------- */

static int64_t
now_ms (void)
{
   return bson_get_monotonic_time () / 1000;
}

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

static char app_name[64];

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

/* Looks a number up in the JSON snapshot by a dotted path. */
static int64_t
metric (const char *dotted)
{
   char *json = mongo_helper_metrics_json_dup (&err);
   bson_t doc;
   bson_iter_t it, found;
   int64_t v = -1;

   ck_assert_ptr_nonnull (json);
   ck_assert (bson_init_from_json (&doc, json, -1, NULL));
   if (bson_iter_init (&it, &doc) && bson_iter_find_descendant (&it, dotted, &found) &&
       BSON_ITER_HOLDS_NUMBER (&found)) {
      v = bson_iter_as_int64 (&found);
   } else {
      v = 0; /* never recorded */
   }
   bson_destroy (&doc);
   bson_free (json);
   return v;
}

static bool
run_ping (void)
{
   bson_t *ping = BCON_NEW ("ping", BCON_INT32 (1));
   bool ok = mongo_helper_command (ping, NULL, &err);
   bson_destroy (ping);
   return ok;
}

/* A ping on another thread, with its own error. */
static void *
ping_thread (void *arg)
{
   mongo_helper_error_t e;
   bson_t *ping = BCON_NEW ("ping", BCON_INT32 (1));
   *(bool *) arg = mongo_helper_command (ping, NULL, &e);
   bson_destroy (ping);
   return NULL;
}

static bool
insert_id (const char *coll, int64_t id)
{
   bson_t *cmd = BCON_NEW (
      "insert", BCON_UTF8 (coll), "documents", "[", "{", "_id", BCON_INT64 (id), "}", "]");
   bool ok = mongo_helper_command (cmd, NULL, &err);
   bson_destroy (cmd);
   return ok;
}

/* Reads every _id of `coll` on the client given (a direct connection to
 * one member, or the singleton's). */
static void
collect_ids (mongoc_client_t *client, const char *db, const char *coll, bool *seen, int64_t max)
{
   mongoc_collection_t *c = mongoc_client_get_collection (client, db, coll);
   bson_t filter = BSON_INITIALIZER;
   mongoc_read_prefs_t *rp = mongoc_read_prefs_new (MONGOC_READ_PRIMARY_PREFERRED);
   mongoc_cursor_t *cur = mongoc_collection_find_with_opts (c, &filter, NULL, rp);
   const bson_t *doc;
   bson_error_t e;
   bson_iter_t it;

   while (mongoc_cursor_next (cur, &doc)) {
      if (bson_iter_init_find (&it, doc, "_id") && BSON_ITER_HOLDS_INT64 (&it)) {
         int64_t id = bson_iter_int64 (&it);
         if (id >= 0 && id < max) {
            seen[id] = true;
         }
      }
   }
   ck_assert_msg (!mongoc_cursor_error (cur, &e), "reading back failed: %s", e.message);
   mongoc_cursor_destroy (cur);
   mongoc_read_prefs_destroy (rp);
   mongoc_collection_destroy (c);
}

/* ---- fixtures ---------------------------------------------------------- */

/* The live server, with this process's own application name (so fail
 * points hit only its clients) and only the library's own retries (so
 * counts are exact). */
static void
live_setup (void)
{
   mh_test_live_setup ();
   setenv ("MONGO_SERVER_SELECTION_TIMEOUT_MS", "3000", 1);
   snprintf (app_name, sizeof app_name, "mh_resil_%ld", (long) getpid ());
   setenv ("MONGO_APP_NAME", app_name, 1);
   setenv ("MONGO_RETRY_READS", "false", 1);
   setenv ("MONGO_RETRY_BASE_MS", "5", 1);
   mongo_helper_metrics_reset ();
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

/* ---- own servers: down, killed, garbage, replica set ------------------- */

static void
own_server_env (int port, const char *extra_opts)
{
   char uri[256];

   snprintf (uri,
             sizeof uri,
             "mongodb://127.0.0.1:%d/mh_resil?%s",
             port,
             extra_opts ? extra_opts : "serverSelectionTimeoutMS=500");
   setenv ("MONGO_CACHE_URI", uri, 1);
}

START_TEST (server_down_at_start_fails_cleanly_then_succeeds_and_circuit_closes)
{
   int port = mh_test_free_port ();
   mh_test_server_t m = {0};
   mongo_helper_circuit_t c;
   int64_t t0;
   char *json;

   own_server_env (port, "serverSelectionTimeoutMS=300");
   setenv ("MONGO_CIRCUIT_FAILURE_THRESHOLD", "2", 1);
   setenv ("MONGO_CIRCUIT_COOLDOWN_MS", "800", 1);
   setenv ("MONGO_RETRY_ATTEMPTS", "1", 1);

   ck_assert (!run_ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
   ck_assert (!run_ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
   mongo_helper_circuit_status (&c);
   ck_assert_int_eq (c.state, MONGO_HELPER_CIRCUIT_OPEN);
   ck_assert_int_eq (c.consecutive_failures, 2);
   ck_assert_int_gt (c.opened_at_ms, 1600000000000);

   /* Open: fail fast without touching the network. */
   t0 = now_ms ();
   ck_assert (!run_ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CIRCUIT_OPEN);
   ck_assert_ptr_nonnull (strstr (err.message, "circuit open"));
   ck_assert_int_lt (now_ms () - t0, 100);
   json = mongo_helper_metrics_json_dup (&err);
   ck_assert_ptr_nonnull (strstr (json, "\"state\" : \"open\""));
   bson_free (json);

   /* Cool-down over, server still down: the probe fails and reopens. */
   mh_test_sleep_ms (900);
   ck_assert (!run_ping ());
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
   mongo_helper_circuit_status (&c);
   ck_assert_int_eq (c.state, MONGO_HELPER_CIRCUIT_OPEN);
   ck_assert_uint_ge (c.rejected, 1);

   /* The server comes up; after the cool-down the probe closes it. */
   mh_test_server_start (&m, port, NULL);
   mh_test_sleep_ms (900);
   MH_ASSERT_OK (run_ping (), err);
   mongo_helper_circuit_status (&c);
   ck_assert_int_eq (c.state, MONGO_HELPER_CIRCUIT_CLOSED);
   ck_assert_int_eq (c.consecutive_failures, 0);
   MH_ASSERT_OK (insert_id ("up", 1), err);
}
END_TEST

START_TEST (half_open_circuit_lets_exactly_one_probe_through)
{
   int port = mh_test_free_port ();
   mongo_helper_circuit_t c;

   own_server_env (port, "serverSelectionTimeoutMS=300");
   setenv ("MONGO_CIRCUIT_FAILURE_THRESHOLD", "1", 1);
   setenv ("MONGO_CIRCUIT_COOLDOWN_MS", "200", 1);
   setenv ("MONGO_RETRY_ATTEMPTS", "1", 1);
   ck_assert (!run_ping ());
   mh_test_sleep_ms (250);
   mongo_helper_circuit_status (&c);
   ck_assert_int_eq (c.state, MONGO_HELPER_CIRCUIT_OPEN);
   ck_assert_int_eq (c.retry_in_ms, 0);
   /* Not yet half-open until a call arrives; that call is the probe and
    * takes ~300 ms (server selection); others fail fast meanwhile. */
   {
      pthread_t t;
      bool other_failed_fast, probe_ok = true;
      ck_assert_int_eq (pthread_create (&t, NULL, ping_thread, &probe_ok), 0);
      mh_test_sleep_ms (100);
      mongo_helper_circuit_status (&c);
      ck_assert_int_eq (c.state, MONGO_HELPER_CIRCUIT_HALF_OPEN);
      other_failed_fast = !run_ping () && err.category == MONGO_HELPER_ERROR_CIRCUIT_OPEN;
      pthread_join (t, NULL);
      ck_assert (other_failed_fast);
      ck_assert (!probe_ok);
   }
   mongo_helper_circuit_status (&c);
   ck_assert_int_eq (c.state, MONGO_HELPER_CIRCUIT_OPEN);
}
END_TEST

static void *
garbage_server (void *arg)
{
   int lfd = *(int *) arg;
   static const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n\xff\xfe\x00\x01garbage";

   for (int i = 0; i < 20; i++) {
      char buf[4096];
      int fd = accept (lfd, NULL, NULL);
      if (fd < 0) {
         break;
      }
      if (read (fd, buf, sizeof buf) > 0) {
         if (write (fd, junk, sizeof junk) < 0) {
            /* the client may have gone */
         }
      }
      close (fd);
   }
   return NULL;
}

START_TEST (garbage_bytes_from_the_server_are_a_connection_error)
{
   struct sockaddr_in a = {0};
   socklen_t len = sizeof a;
   int lfd = socket (AF_INET, SOCK_STREAM, 0);
   pthread_t t;

   a.sin_family = AF_INET;
   a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
   ck_assert_int_eq (bind (lfd, (struct sockaddr *) &a, sizeof a), 0);
   ck_assert_int_eq (listen (lfd, 16), 0);
   getsockname (lfd, (struct sockaddr *) &a, &len);
   ck_assert_int_eq (pthread_create (&t, NULL, garbage_server, &lfd), 0);
   own_server_env (ntohs (a.sin_port), "serverSelectionTimeoutMS=500");
   setenv ("MONGO_RETRY_ATTEMPTS", "2", 1);
   for (int i = 0; i < 2; i++) {
      bson_t *cmd = BCON_NEW ("find", BCON_UTF8 ("x"));
      ck_assert (!run_ping ());
      ck_assert_msg (err.category == MONGO_HELPER_ERROR_CONNECTION,
                     "expected connection, got %s: %s",
                     mongo_helper_category_name (err.category),
                     err.message);
      ck_assert (!mongo_helper_read_command (cmd, 0, NULL, &err));
      ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_CONNECTION);
      bson_destroy (cmd);
   }
   shutdown (lfd, SHUT_RDWR);
   close (lfd);
   pthread_join (t, NULL);
}
END_TEST

#define KILL_WRITES 400
static bool kill_ok[KILL_WRITES], kill_seen[KILL_WRITES];

START_TEST (server_killed_mid_writes_and_restarted_loses_no_acknowledged_write)
{
   int port = mh_test_free_port ();
   mh_test_server_t m = {.persist = true}; /* --dbpath: the journal survives SIGKILL */
   int failures = 0, ok_count = 0, reported = 0;
   int64_t deadline = now_ms () + 30000;
   mongo_helper_conn_t *conn;

   own_server_env (port, "serverSelectionTimeoutMS=2000&socketTimeoutMS=2000");
   setenv ("MONGO_CIRCUIT_FAILURE_THRESHOLD", "0", 1);
   mh_test_server_start (&m, port, NULL);
   for (int i = 0; i < KILL_WRITES && now_ms () < deadline; i++) {
      if (i == KILL_WRITES / 3) {
         mh_test_server_kill (&m);
      }
      if (i == KILL_WRITES / 3 + 5) {
         mh_test_server_start (&m, port, NULL);
      }
      kill_ok[i] = insert_id ("killed", i);
      reported++;
      if (kill_ok[i]) {
         ok_count++;
      } else {
         ck_assert_msg (err.category == MONGO_HELPER_ERROR_CONNECTION ||
                           err.category == MONGO_HELPER_ERROR_TIMEOUT,
                        "write %d: %s",
                        i,
                        err.message);
         failures++;
      }
   }
   ck_assert_int_eq (reported, KILL_WRITES);
   ck_assert_int_ge (failures, 1); /* the kill was noticed and reported */
   ck_assert_int_gt (ok_count, KILL_WRITES / 2);

   /* Restart once more (journal replay) and check every acknowledged id. */
   mh_test_server_kill (&m);
   mh_test_server_start (&m, port, NULL);
   conn = mongo_helper_acquire (&err);
   MH_ASSERT_OK (conn != NULL, err);
   collect_ids (mongo_helper_conn_client (conn), "mh_resil", "killed", kill_seen, KILL_WRITES);
   mongo_helper_release (conn);
   for (int i = 0; i < KILL_WRITES; i++) {
      ck_assert_msg (!kill_ok[i] || kill_seen[i], "write %d was acknowledged but is lost", i);
   }
}
END_TEST

#define RS_WRITES 300
static bool rs_ok[RS_WRITES], rs_seen[RS_WRITES];

START_TEST (primary_step_down_mid_run_loses_no_accepted_write)
{
   int p1 = mh_test_free_port (), p2 = mh_test_free_port ();
   mh_test_server_t m1 = {0}, m2 = {0};
   char hosts[96], uri[256], me1[32], me2[32];
   const char *a1[] = {"--replset", "rs0", "--hosts", hosts, "--primary", NULL};
   const char *a2[] = {"--replset", "rs0", "--hosts", hosts, "--secondary", NULL};
   int failures = 0, ok_count = 0;
   bson_error_t e;

   snprintf (me1, sizeof me1, "127.0.0.1:%d", p1);
   snprintf (me2, sizeof me2, "127.0.0.1:%d", p2);
   snprintf (hosts, sizeof hosts, "%s,%s", me1, me2);
   mh_test_server_start (&m1, p1, a1);
   mh_test_server_start (&m2, p2, a2);
   snprintf (uri,
             sizeof uri,
             "mongodb://%s/mh_resil?replicaSet=rs0&serverSelectionTimeoutMS=3000"
             "&heartbeatFrequencyMS=500",
             hosts);
   setenv ("MONGO_CACHE_URI", uri, 1);
   setenv ("MONGO_CIRCUIT_FAILURE_THRESHOLD", "0", 1);

   for (int i = 0; i < RS_WRITES; i++) {
      if (i == RS_WRITES / 2) {
         /* Step down: the old primary refuses writes with 10107, the other
          * member becomes primary. */
         mongoc_client_t *direct;
         char duri[96];
         bson_t *cmd;

         snprintf (duri, sizeof duri, "mongodb://%s/?directConnection=true", me1);
         direct = mongoc_client_new (duri);
         cmd = BCON_NEW ("mockSetRole", "secondary");
         ck_assert_msg (
            mongoc_client_command_simple (direct, "admin", cmd, NULL, NULL, &e), "%s", e.message);
         bson_destroy (cmd);
         mongoc_client_destroy (direct);
         snprintf (duri, sizeof duri, "mongodb://%s/?directConnection=true", me2);
         direct = mongoc_client_new (duri);
         cmd = BCON_NEW ("mockSetRole", "primary");
         ck_assert_msg (
            mongoc_client_command_simple (direct, "admin", cmd, NULL, NULL, &e), "%s", e.message);
         bson_destroy (cmd);
         mongoc_client_destroy (direct);
      }
      rs_ok[i] = insert_id ("stepdown", i);
      if (rs_ok[i]) {
         ok_count++;
      } else {
         failures++;
      }
   }
   ck_assert_int_gt (ok_count, RS_WRITES / 2 + 10); /* writes went on after */
   ck_assert_int_lt (failures, 20);
   /* The test server does not replicate: each member keeps what it
    * accepted, so the union of both members must hold every accepted id. */
   {
      const char *members[] = {me1, me2};
      for (int k = 0; k < 2; k++) {
         char duri[128];
         mongoc_client_t *direct;
         snprintf (duri, sizeof duri, "mongodb://%s/?directConnection=true", members[k]);
         direct = mongoc_client_new (duri);
         collect_ids (direct, "mh_resil", "stepdown", rs_seen, RS_WRITES);
         mongoc_client_destroy (direct);
      }
   }
   for (int i = 0; i < RS_WRITES; i++) {
      ck_assert_msg (!rs_ok[i] || rs_seen[i], "write %d was accepted but is lost", i);
   }
}
END_TEST

static bool read_ok;
static const bson_t *read_find;
static mongo_helper_error_t read_err;

static void *
read_thread (void *arg)
{
   (void) arg;
   read_ok = mongo_helper_read_command (read_find, 0, NULL, &read_err);
   return NULL;
}

/* Reads retry across the step-down: the library's own retries carry a
 * read over the not-primary window. */
START_TEST (read_is_retried_across_a_step_down)
{
   int p1 = mh_test_free_port (), p2 = mh_test_free_port ();
   mh_test_server_t m1 = {0}, m2 = {0};
   char hosts[96], uri[256], duri[96];
   const char *a1[] = {"--replset", "rs0", "--hosts", hosts, "--primary", NULL};
   const char *a2[] = {"--replset", "rs0", "--hosts", hosts, "--secondary", NULL};
   mongoc_client_t *direct;
   bson_t *cmd, *find;
   bson_error_t e;

   snprintf (hosts, sizeof hosts, "127.0.0.1:%d,127.0.0.1:%d", p1, p2);
   mh_test_server_start (&m1, p1, a1);
   mh_test_server_start (&m2, p2, a2);
   snprintf (uri,
             sizeof uri,
             "mongodb://%s/mh_resil?replicaSet=rs0&serverSelectionTimeoutMS=3000"
             "&heartbeatFrequencyMS=500",
             hosts);
   setenv ("MONGO_CACHE_URI", uri, 1);
   setenv ("MONGO_RETRY_ATTEMPTS", "5", 1);
   setenv ("MONGO_RETRY_BASE_MS", "100", 1);
   find = BCON_NEW ("find", BCON_UTF8 ("rs_read"));
   MH_ASSERT_OK (mongo_helper_read_command (find, 0, NULL, &err), err);
   mongo_helper_metrics_reset ();
   snprintf (duri, sizeof duri, "mongodb://127.0.0.1:%d/?directConnection=true", p1);
   direct = mongoc_client_new (duri);
   cmd = BCON_NEW ("mockSetRole", "secondary");
   ck_assert_msg (
      mongoc_client_command_simple (direct, "admin", cmd, NULL, NULL, &e), "%s", e.message);
   bson_destroy (cmd);
   mongoc_client_destroy (direct);
   /* The read hits the old primary (13435), then waits for a new one,
    * which appears 400 ms later. */
   {
      pthread_t t;
      read_ok = false;
      read_find = find;
      ck_assert_int_eq (pthread_create (&t, NULL, read_thread, NULL), 0);
      mh_test_sleep_ms (400);
      snprintf (duri, sizeof duri, "mongodb://127.0.0.1:%d/?directConnection=true", p2);
      direct = mongoc_client_new (duri);
      cmd = BCON_NEW ("mockSetRole", "primary");
      ck_assert_msg (
         mongoc_client_command_simple (direct, "admin", cmd, NULL, NULL, &e), "%s", e.message);
      bson_destroy (cmd);
      mongoc_client_destroy (direct);
      pthread_join (t, NULL);
   }
   ck_assert_msg (read_ok, "read failed: %s", read_err.message);
   ck_assert_int_ge (metric ("operations.read_command.retries"), 1);
   ck_assert_int_eq (metric ("operations.read_command.ok"), 1);
   bson_destroy (find);
}
END_TEST

/* ---- retryable writes: libmongoc's retry and the library's ------------- */

static const char *const one_member_set[] = {"--replset", "rs0", NULL};

/* A private single-member replica set (libmongoc sends retryable writes,
 * with lsid + txnNumber, only to replica sets), its command log read by
 * the tests, and the singleton pointed at it.  Heartbeats are rare, so
 * libmongoc learns of a step-down from the write that hits it, never from
 * a heartbeat just before; while a write waits for a primary, libmongoc
 * checks every 500 ms (minHeartbeatFrequencyMS) anyway. */
static void
own_replica_set (mh_test_server_t *m)
{
   mh_test_server_start (m, 0, one_member_set);
   own_server_env (m->port,
                   "replicaSet=rs0&serverSelectionTimeoutMS=10000&heartbeatFrequencyMS=60000");
}

/* An admin command on one member, outside the library. */
static void
member_command (int port, const char *json)
{
   char uri[96];
   mongoc_client_t *direct;
   bson_t cmd;
   bson_error_t e;

   snprintf (uri, sizeof uri, "mongodb://127.0.0.1:%d/?directConnection=true", port);
   direct = mongoc_client_new (uri);
   ck_assert_msg (bson_init_from_json (&cmd, json, -1, &e), "%s", e.message);
   ck_assert_msg (mongoc_client_command_simple (direct, "admin", &cmd, NULL, NULL, &e),
                  "%s: %s",
                  json,
                  e.message);
   bson_destroy (&cmd);
   mongoc_client_destroy (direct);
}

/* The txnNumber of each command in the server's log whose line holds both
 * needles, in order (-1: sent without one); returns how many. */
static int
logged_txn_numbers (const mh_test_server_t *m,
                    const char *needle1,
                    const char *needle2,
                    int64_t *txns,
                    int max)
{
   FILE *f = fopen (m->command_log, "r");
   char *line = NULL;
   size_t cap = 0;
   int n = 0;

   ck_assert_msg (f, "no command log %s", m->command_log);
   while (getline (&line, &cap, f) > 0) {
      if (strstr (line, needle1) && strstr (line, needle2)) {
         bson_error_t e;
         bson_t *cmd = bson_new_from_json ((const uint8_t *) line, -1, &e);
         bson_iter_t it;

         ck_assert_msg (cmd, "bad log line: %s", e.message);
         ck_assert_int_lt (n, max);
         txns[n++] = bson_iter_init_find (&it, cmd, "txnNumber") ? bson_iter_as_int64 (&it) : -1;
         bson_destroy (cmd);
      }
   }
   free (line);
   fclose (f);
   return n;
}

/* A primary steps down (replSetStepDown) under a plain insert: the old
 * primary answers NotWritablePrimary with the RetryableWriteError label,
 * libmongoc (not the library) sends the same insert again with the same
 * session and txnNumber once the member is primary again, and the document
 * is stored once. */
START_TEST (step_down_insert_is_retried_by_libmongoc_with_its_txn_number_and_lands_once)
{
   mh_test_server_t m = {0};
   bson_t *doc = BCON_NEW ("_id", BCON_INT32 (7), "during", BCON_UTF8 ("step-down"));
   bson_t *sel = BCON_NEW ("_id", BCON_INT32 (7));
   int64_t txn[4];

   own_replica_set (&m);
   MH_ASSERT_OK (insert_id ("stepped", 1), err); /* connected, primary known */
   mongo_helper_metrics_reset ();
   /* Secondary for 2 s, then (the only member) primary again. */
   member_command (m.port, "{\"replSetStepDown\": 2, \"secondaryCatchUpPeriodSecs\": 0}");
   MH_ASSERT_OK (mongo_helper_insert_one (NULL, "stepped", doc, NULL, &err), err);

   ck_assert_int_eq (logged_txn_numbers (&m, "{\"insert\": \"stepped\"", "\"step-down\"", txn, 4),
                     2);
   ck_assert_msg (txn[0] >= 0 && txn[0] == txn[1],
                  "expected the retry to reuse txnNumber %lld, got %lld",
                  (long long) txn[0],
                  (long long) txn[1]);
   ck_assert_int_eq (metric ("commands.insert.failed"), 1);    /* NotWritablePrimary */
   ck_assert_int_eq (metric ("commands.insert.succeeded"), 1); /* libmongoc's retry */
   ck_assert_int_eq (metric ("operations.insert_one.calls"), 1);
   ck_assert_int_eq (metric ("operations.insert_one.retries"), 0); /* not the library */
   ck_assert_int_eq (mh_test_raw_count ("stepped", sel), 1);
   bson_destroy (doc);
   bson_destroy (sel);
}
END_TEST

/* mh_run reads the server's RetryableWriteError label: an idempotent
 * library write (cache_set, a replacement by _id) is repeated on it even
 * for a code the library's own list does not have (11601 Interrupted), and
 * is not without it; a plain insert that still fails after libmongoc's own
 * retry is not repeated, and its message names the label. */
START_TEST (retryable_write_label_decides_the_library_retry)
{
   mh_test_server_t m = {0};
   mongo_helper_cache_options_t co;
   mongo_helper_cache_t *cache;
   bson_t *v1 = BCON_NEW ("v", BCON_INT32 (1)), *v2 = BCON_NEW ("v", BCON_INT32 (2));
   bson_t *v3 = BCON_NEW ("v", BCON_INT32 (3));
   bson_t *doc = BCON_NEW ("_id", BCON_INT32 (9), "plain", BCON_UTF8 ("labelled-insert"));
   bson_t *sel = BCON_NEW ("_id", BCON_INT32 (9));
   bson_t got;
   int64_t txn[8];
   char fp[512];

   own_replica_set (&m);
   mongo_helper_cache_options_init (&co);
   co.collection = "labelled_cache";
   cache = mongo_helper_cache_new (&co, &err);
   MH_ASSERT_OK (cache != NULL, err);
   MH_ASSERT_OK (mongo_helper_cache_set (cache, "label-key", v1, 0, &err), err); /* set-up done */
   mongo_helper_metrics_reset ();

   /* Labelled twice: libmongoc retries once (same txnNumber), both fail,
    * then the library runs the write again (a new txnNumber). */
   snprintf (fp,
             sizeof fp,
             "{\"configureFailPoint\": \"failCommand\", \"mode\": {\"times\": 2}, \"data\": "
             "{\"failCommands\": [\"update\"], \"errorCode\": 11601, \"errorLabels\": "
             "[\"RetryableWriteError\"], \"appName\": \"%s\"}}",
             app_name);
   member_command (m.port, fp);
   MH_ASSERT_OK (mongo_helper_cache_set (cache, "label-key", v2, 0, &err), err);
   ck_assert_int_eq (metric ("operations.cache_set.retries"), 1);
   ck_assert_int_eq (metric ("commands.update.failed"), 2);
   ck_assert_int_eq (metric ("commands.update.succeeded"), 1);
   ck_assert_int_eq (
      logged_txn_numbers (
         &m, "{\"update\": \"labelled_cache\"", "\"v\": {\"$numberInt\": \"2\"}", txn, 8),
      3);
   ck_assert_msg (txn[0] == txn[1] && txn[2] > txn[1],
                  "expected txnNumbers n, n (libmongoc), then a new one (the library); got %lld "
                  "%lld %lld",
                  (long long) txn[0],
                  (long long) txn[1],
                  (long long) txn[2]);
   MH_ASSERT_OK (mongo_helper_cache_get (cache, "label-key", &got, &err), err);
   ck_assert_int_eq (mh_test_int_at (&got, "v"), 2);
   bson_destroy (&got);

   /* The same code without the label is permanent: one attempt, the error
    * as the server gave it, the old value kept. */
   snprintf (fp,
             sizeof fp,
             "{\"configureFailPoint\": \"failCommand\", \"mode\": {\"times\": 1}, \"data\": "
             "{\"failCommands\": [\"update\"], \"errorCode\": 11601, \"errorLabels\": [], "
             "\"appName\": \"%s\"}}",
             app_name);
   member_command (m.port, fp);
   MH_ASSERT_FAILS_WITH (mongo_helper_cache_set (cache, "label-key", v3, 0, &err),
                         MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 11601);
   ck_assert_ptr_null (strstr (err.message, "RetryableWriteError"));
   ck_assert_int_eq (metric ("operations.cache_set.retries"), 1); /* unchanged */
   ck_assert_int_eq (metric ("commands.update.failed"), 3);
   MH_ASSERT_OK (mongo_helper_cache_get (cache, "label-key", &got, &err), err);
   ck_assert_int_eq (mh_test_int_at (&got, "v"), 2);
   bson_destroy (&got);

   /* A plain insert: PrimarySteppedDown twice, labelled by the server
    * itself.  libmongoc's one retry fails too; the library does not repeat
    * a plain write and says why. */
   snprintf (fp,
             sizeof fp,
             "{\"configureFailPoint\": \"failCommand\", \"mode\": {\"times\": 2}, \"data\": "
             "{\"failCommands\": [\"insert\"], \"errorCode\": 189, \"appName\": \"%s\"}}",
             app_name);
   member_command (m.port, fp);
   MH_ASSERT_FAILS_WITH (mongo_helper_insert_one (NULL, "labelled", doc, NULL, &err),
                         MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 189);
   ck_assert_msg (strstr (err.message, "RetryableWriteError") &&
                     strstr (err.message, "not repeated by the library"),
                  "the message does not name the label: %s",
                  err.message);
   ck_assert_int_eq (metric ("operations.insert_one.retries"), 0);
   ck_assert_int_eq (metric ("commands.insert.failed"), 2);
   ck_assert_int_eq (
      logged_txn_numbers (&m, "{\"insert\": \"labelled\"", "\"labelled-insert\"", txn, 8), 2);
   ck_assert_int_eq (txn[0], txn[1]); /* libmongoc's own retry */
   ck_assert_int_eq (mh_test_raw_count ("labelled", sel), 0);
   /* The fail point is spent: the caller's own retry lands once. */
   MH_ASSERT_OK (mongo_helper_insert_one (NULL, "labelled", doc, NULL, &err), err);
   ck_assert_int_eq (mh_test_raw_count ("labelled", sel), 1);

   mongo_helper_cache_destroy (cache);
   bson_destroy (v1);
   bson_destroy (v2);
   bson_destroy (v3);
   bson_destroy (doc);
   bson_destroy (sel);
}
END_TEST

Suite *
resilience_suite (void)
{
   Suite *s = suite_create ("resilience");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");
   TCase *own = tcase_create ("own_servers");

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

   tcase_add_checked_fixture (own, live_setup, mh_test_teardown);
   tcase_set_timeout (own, 90);
   tcase_add_test (own, server_down_at_start_fails_cleanly_then_succeeds_and_circuit_closes);
   tcase_add_test (own, half_open_circuit_lets_exactly_one_probe_through);
   tcase_add_test (own, garbage_bytes_from_the_server_are_a_connection_error);
   tcase_add_test (own, server_killed_mid_writes_and_restarted_loses_no_acknowledged_write);
   tcase_add_test (own, primary_step_down_mid_run_loses_no_accepted_write);
   tcase_add_test (own, read_is_retried_across_a_step_down);
   tcase_add_test (own,
                   step_down_insert_is_retried_by_libmongoc_with_its_txn_number_and_lands_once);
   tcase_add_test (own, retryable_write_label_decides_the_library_retry);
   suite_add_tcase (s, own);
   return s;
}
