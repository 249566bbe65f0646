/* src/resilience.c under outages, all on 127.0.0.1: test servers this file
 * starts itself from $MH_MOCK_SERVER_SCRIPT (down at start, killed,
 * restarted, stepped down as a one-member replica set), the circuit
 * breaker's half-open probe, a tiny in-process socket server that answers
 * garbage, and which retryable writes the library and libmongoc retry.
 * Fault injection on the shared server is in test_resilience.c; the helpers
 * both use in resilience_fixture.h. */
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

/* A two-member replica set on loopback, the member at p1 primary and the
 * one at p2 secondary, with the singleton pointed at it; `hosts` receives
 * "host:port,host:port". */
static void
rs_pair_start (mh_test_server_t *m1, mh_test_server_t *m2, int p1, int p2, char hosts[96])
{
   char uri[256];
   const char *a1[] = {"--replset", "rs0", "--hosts", hosts, "--primary", NULL};
   const char *a2[] = {"--replset", "rs0", "--hosts", hosts, "--secondary", NULL};

   snprintf (hosts, 96, "127.0.0.1:%d,127.0.0.1:%d", p1, p2);
   mh_test_server_start (m1, p1, a1);
   mh_test_server_start (m2, p2, a2);
   snprintf (uri,
             sizeof uri,
             "mongodb://%s/mh_resil?replicaSet=rs0&serverSelectionTimeoutMS=3000"
             "&heartbeatFrequencyMS=500",
             hosts);
   setenv ("MONGO_CACHE_URI", uri, 1);
}

#define RS_WRITES 300
static bool rs_ok[RS_WRITES], rs_seen[RS_WRITES];

START_TEST (primary_step_down_mid_run_loses_no_accepted_write)
{
   int p1 = mh_test_free_port (), p2 = mh_test_free_port ();
   mh_test_server_t m1 = {0}, m2 = {0};
   char hosts[96];
   int failures = 0, ok_count = 0;

   rs_pair_start (&m1, &m2, p1, p2, hosts);
   setenv ("MONGO_CIRCUIT_FAILURE_THRESHOLD", "0", 1);

   for (int i = 0; i < RS_WRITES; i++) {
      if (i == RS_WRITES / 2) {
         /* Step down: the old primary refuses writes with 10107, the other
          * member becomes primary. */
         member_command (p1, "{\"mockSetRole\": \"secondary\"}");
         member_command (p2, "{\"mockSetRole\": \"primary\"}");
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
      const int members[] = {p1, p2};
      for (int k = 0; k < 2; k++) {
         char duri[128];
         mongoc_client_t *direct;
         snprintf (duri, sizeof duri, "mongodb://127.0.0.1:%d/?directConnection=true", members[k]);
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
   char hosts[96];
   bson_t *find;

   rs_pair_start (&m1, &m2, p1, p2, hosts);
   setenv ("MONGO_RETRY_ATTEMPTS", "5", 1);
   setenv ("MONGO_RETRY_BASE_MS", "100", 1);
   find = BCON_NEW ("find", BCON_UTF8 ("rs_read"));
   MH_ASSERT_OK (mongo_helper_read_command (find, 0, NULL, &err), err);
   mongo_helper_metrics_reset ();
   member_command (p1, "{\"mockSetRole\": \"secondary\"}");
   /* The read hits the old primary (13435), then waits for a new one,
    * which appears 400 ms later. */
   {
      pthread_t t;
      read_ok = false;
      read_find = find;
      ck_assert_int_eq (pthread_create (&t, NULL, read_thread, NULL), 0);
      mh_test_sleep_ms (400);
      member_command (p2, "{\"mockSetRole\": \"primary\"}");
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
resilience_outages_suite (void)
{
   Suite *s = suite_create ("resilience_outages");
   TCase *own = tcase_create ("own_servers");

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
