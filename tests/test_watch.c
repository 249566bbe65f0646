/* src/watch.c: change streams.  "core" needs no server (bad input is
 * refused first).  "live": the exact command and the standalone's refusal
 * at a private (standalone) test server; the behaviour (events in order,
 * update lookup, resume tokens, a stream that survives forced disconnects)
 * on a private single-member replica set of the test server, or on the
 * replica set MONGO_TEST_URI names (a real standalone skips these). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mh_test.h"

static mongo_helper_error_t err;

static bool
ignore_event (const bson_t *ev, void *ud)
{
   (void) ev;
   (void) ud;
   return false;
}

START_TEST (watch_rejects_bad_input_without_touching_the_server)
{
   mongo_helper_watch_opts_t both = {0}, empty_tok = {0}, bad_db = {0};
   bson_t *tok = BCON_NEW ("_data", BCON_UTF8 ("82AB"));
   bson_t empty = BSON_INITIALIZER;
   bson_t out;

   mh_test_clean_env ();
   both.resume_after = tok;
   both.start_after = tok;
   empty_tok.resume_after = &empty;
   bad_db.database = "";
   MH_ASSERT_FAILS_WITH (mongo_helper_watch ("c", NULL, NULL, NULL, &out, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   ck_assert (bson_empty (&out)); /* initialised even on failure */
   bson_destroy (&out);
   MH_ASSERT_FAILS_WITH (mongo_helper_watch ("", NULL, ignore_event, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_watch ("c", &both, ignore_event, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_watch ("c", &empty_tok, ignore_event, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   MH_ASSERT_FAILS_WITH (mongo_helper_watch ("c", &bad_db, ignore_event, NULL, NULL, &err),
                         MONGO_HELPER_ERROR_INVALID_ARGUMENT);
   bson_destroy (tok);
}
END_TEST

/* ---- live ------------------------------------------------------------- */

/* The first logged command whose text contains `needle`, parsed. */
static bson_t *
logged_command (const char *log_path, const char *needle)
{
   FILE *f = fopen (log_path, "r");
   char *line = NULL;
   size_t cap = 0;
   bson_t *doc = NULL;

   ck_assert_ptr_nonnull (f);
   while (getline (&line, &cap, f) > 0) {
      if (strstr (line, needle)) {
         bson_error_t e;
         doc = bson_new_from_json ((const uint8_t *) line, -1, &e);
         ck_assert_msg (doc, "bad log line: %s", e.message);
         break;
      }
   }
   free (line);
   fclose (f);
   return doc;
}

START_TEST (watch_sends_change_stream_aggregate_and_reports_standalone_error)
{
   mh_test_server_t srv = {0};
   char uri[160];
   bson_t *tok = BCON_NEW ("_data", BCON_UTF8 ("8263A1B2C3000000012B022C0100296E5A1004"));
   bson_t *pipeline = BCON_NEW (
      "pipeline", "[", "{", "$match", "{", "operationType", BCON_UTF8 ("insert"), "}", "}", "]");
   mongo_helper_watch_opts_t opts = {0};
   bson_t *cmd, out;
   bson_iter_t it;
   int calls = 0;

   if (!mh_test_on_mock ()) {
      MH_SKIP ("captures the command at the mock server; a real server is in use");
   }
   mh_test_server_start (&srv, 0, NULL); /* logs every command */
   snprintf (
      uri, sizeof uri, "mongodb://127.0.0.1:%d/mh_test?serverSelectionTimeoutMS=5000", srv.port);
   mh_test_clean_env ();
   setenv ("MONGO_HELPER_CONFIG", "/dev/null", 1);
   MH_ASSERT_OK (mongo_helper_init_uri (uri, &err), err);

   opts.pipeline = pipeline;
   opts.full_document_update_lookup = true;
   opts.resume_after = tok;
   opts.max_await_time_ms = 250;
   opts.batch_size = 10;
   MH_ASSERT_FAILS_WITH (mongo_helper_watch ("orders", &opts, ignore_event, &calls, &out, &err),
                         MONGO_HELPER_ERROR_SERVER);
   ck_assert_int_eq (err.code, 40573);
   ck_assert_ptr_nonnull (strstr (err.message, "change stream"));
   ck_assert_int_eq (calls, 0);
   ck_assert (bson_empty (&out)); /* no event, no token */
   bson_destroy (&out);

   cmd = logged_command (srv.command_log, "$changeStream");
   ck_assert_msg (cmd, "no $changeStream command was sent");
   ck_assert_str_eq (mh_test_utf8_at (cmd, "aggregate"), "orders");
   ck_assert_str_eq (mh_test_utf8_at (cmd, "$db"), "mh_test");
   ck_assert_str_eq (mh_test_utf8_at (cmd, "pipeline.0.$changeStream.fullDocument"),
                     "updateLookup");
   ck_assert_str_eq (mh_test_utf8_at (cmd, "pipeline.0.$changeStream.resumeAfter._data"),
                     "8263A1B2C3000000012B022C0100296E5A1004");
   ck_assert_str_eq (mh_test_utf8_at (cmd, "pipeline.1.$match.operationType"), "insert");
   ck_assert (bson_iter_init (&it, cmd) && !bson_iter_find_descendant (&it, "pipeline.2", &it));
   ck_assert (bson_iter_init (&it, cmd) &&
              bson_iter_find_descendant (&it, "cursor.batchSize", &it));
   ck_assert_int_eq (bson_iter_as_int64 (&it), 10);
   bson_destroy (cmd);

   /* The whole database, starting after a token: aggregate 1. */
   opts.pipeline = NULL;
   opts.full_document_update_lookup = false;
   opts.resume_after = NULL;
   opts.start_after = tok;
   opts.database = "other_db";
   memset (&err, 0, sizeof err);
   ck_assert (!mongo_helper_watch (NULL, &opts, ignore_event, &calls, NULL, &err));
   ck_assert_int_eq (err.category, MONGO_HELPER_ERROR_SERVER);
   cmd = logged_command (srv.command_log, "startAfter");
   ck_assert_msg (cmd, "no database-level $changeStream command was sent");
   ck_assert (bson_iter_init_find (&it, cmd, "aggregate"));
   ck_assert_int_eq (bson_iter_as_int64 (&it), 1);
   ck_assert_str_eq (mh_test_utf8_at (cmd, "$db"), "other_db");
   ck_assert_str_eq (mh_test_utf8_at (cmd, "pipeline.0.$changeStream.startAfter._data"),
                     "8263A1B2C3000000012B022C0100296E5A1004");
   ck_assert (bson_iter_init (&it, cmd) &&
              !bson_iter_find_descendant (&it, "pipeline.0.$changeStream.fullDocument", &it));
   bson_destroy (cmd);

   mongo_helper_shutdown ();
   mh_test_server_stop (&srv);
   bson_destroy (tok);
   bson_destroy (pipeline);
}
END_TEST

/* ---- live, on a replica set ---------------------------------------------- */

static const char *const replset_args[] = {"--replset", "rs0", NULL};

/* The replica set the behavioural tests run on: on the test server a
 * private single-member set; on a real server, that server.  Returns the
 * URI the library uses. */
static const char *
replica_set (mh_test_server_t *srv)
{
   return mh_test_own_live_server (
      srv, replset_args, "replicaSet=rs0&serverSelectionTimeoutMS=5000");
}

/* Counted per command by the library's metrics (APM on its pool). */
static int64_t
command_metric (const char *dotted)
{
   char *json = mongo_helper_metrics_json_dup (&err);
   bson_t doc;
   bson_iter_t it, found;
   int64_t v = 0;

   ck_assert_ptr_nonnull (json);
   ck_assert (bson_init_from_json (&doc, json, -1, NULL));
   if (bson_iter_init (&it, &doc) && bson_iter_find_descendant (&it, dotted, &found) &&
       BSON_ITER_HOLDS_NUMBER (&found)) {
      v = bson_iter_as_int64 (&found);
   }
   bson_destroy (&doc);
   bson_free (json);
   return v;
}

typedef struct {
   int n;
   int stop_after;
   char types[8][16];
   int32_t values[8];
   bool full_doc_on_update;
} events_t;

static bool
collect_event (const bson_t *ev, void *ud)
{
   events_t *e = ud;
   bson_iter_t it;

   if (e->n < 8) {
      if (bson_iter_init_find (&it, ev, "operationType")) {
         bson_strncpy (e->types[e->n], bson_iter_utf8 (&it, NULL), sizeof e->types[0]);
      }
      if (bson_iter_init (&it, ev) && bson_iter_find_descendant (&it, "fullDocument.v", &it)) {
         e->values[e->n] = bson_iter_int32 (&it);
         if (strcmp (e->types[e->n], "update") == 0) {
            e->full_doc_on_update = true;
         }
      }
   }
   e->n++;
   return e->n < e->stop_after;
}

static const char *writer_coll;

static void *
change_writer (void *arg)
{
   mongo_helper_error_t e;
   mongoc_database_t *db = mongo_helper_database (&e);
   mongoc_collection_t *coll;
   bson_t *d1 = BCON_NEW ("_id", BCON_INT32 (1), "v", BCON_INT32 (10));
   bson_t *d2 = BCON_NEW ("_id", BCON_INT32 (2), "v", BCON_INT32 (20));
   bson_t *sel = BCON_NEW ("_id", BCON_INT32 (1));
   bson_t *upd = BCON_NEW ("$set", "{", "v", BCON_INT32 (11), "}");
   intptr_t ok = 0;

   (void) arg;
   if (db) {
      coll = mongoc_database_get_collection (db, writer_coll);
      ok = mongoc_collection_insert_one (coll, d1, NULL, NULL, NULL) &&
           mongoc_collection_insert_one (coll, d2, NULL, NULL, NULL) &&
           mongoc_collection_update_one (coll, sel, upd, NULL, NULL, NULL);
      mongoc_collection_destroy (coll);
   }
   mongo_helper_thread_release ();
   bson_destroy (d1);
   bson_destroy (d2);
   bson_destroy (sel);
   bson_destroy (upd);
   return (void *) ok;
}

START_TEST (watch_delivers_events_in_order_with_update_lookup_and_resumes)
{
   mh_test_server_t srv = {0};
   mongo_helper_watch_opts_t opts = {0};
   events_t ev = {0}, again = {0};
   bson_t start, token, token2;
   pthread_t t;
   void *wrote;

   replica_set (&srv);
   writer_coll = mh_test_collection ("watched");
   {
      mongoc_collection_t *c = mh_test_raw_collection (writer_coll);
      bson_t empty = BSON_INITIALIZER;
      mongoc_collection_insert_one (c, &empty, NULL, NULL, NULL); /* create it */
      mongoc_collection_delete_many (c, &empty, NULL, NULL, NULL);
      mongoc_collection_destroy (c);
   }

   /* A short watch gives the starting point, so no write can be missed. */
   opts.timeout_ms = 300;
   ev.stop_after = 100;
   if (!mongo_helper_watch (writer_coll, &opts, collect_event, &ev, &start, &err) &&
       err.code == 40573 && !mh_test_on_mock ()) {
      bson_destroy (&start);
      MH_SKIP ("the server at MONGO_TEST_URI is a standalone: change streams need a replica set");
   }
   MH_ASSERT_OK (err.category == MONGO_HELPER_ERROR_NONE, err);
   ck_assert_int_eq (ev.n, 0); /* the writes above came before the stream */
   ck_assert (!bson_empty (&start));

   ck_assert_int_eq (pthread_create (&t, NULL, change_writer, NULL), 0);
   memset (&ev, 0, sizeof ev);
   ev.stop_after = 3;
   opts.resume_after = &start;
   opts.full_document_update_lookup = true;
   opts.timeout_ms = 20000;
   MH_ASSERT_OK (mongo_helper_watch (writer_coll, &opts, collect_event, &ev, &token, &err), err);
   pthread_join (t, &wrote);
   ck_assert_msg ((intptr_t) wrote == 1, "the writer thread failed");
   ck_assert_int_eq (ev.n, 3);
   ck_assert_str_eq (ev.types[0], "insert");
   ck_assert_int_eq (ev.values[0], 10);
   ck_assert_str_eq (ev.types[1], "insert");
   ck_assert_int_eq (ev.values[1], 20);
   ck_assert_str_eq (ev.types[2], "update");
   ck_assert_int_eq (ev.values[2], 11);
   ck_assert (ev.full_doc_on_update);

   /* Resuming from the token after the first insert replays the rest. */
   {
      mongo_helper_watch_opts_t o2 = {0};
      events_t first = {0};

      first.stop_after = 1;
      o2.resume_after = &start;
      o2.timeout_ms = 20000;
      MH_ASSERT_OK (mongo_helper_watch (writer_coll, &o2, collect_event, &first, &token2, &err),
                    err);
      ck_assert_int_eq (first.n, 1);
      again.stop_after = 2;
      o2.resume_after = &token2;
      o2.full_document_update_lookup = true;
      MH_ASSERT_OK (mongo_helper_watch (writer_coll, &o2, collect_event, &again, NULL, &err), err);
      ck_assert_int_eq (again.n, 2);
      ck_assert_str_eq (again.types[0], "insert");
      ck_assert_int_eq (again.values[0], 20);
      ck_assert_str_eq (again.types[1], "update");
      bson_destroy (&token2);
   }

   /* With nothing happening, the timeout ends the watch successfully. */
   memset (&ev, 0, sizeof ev);
   ev.stop_after = 100;
   opts.resume_after = &token;
   opts.timeout_ms = 500;
   MH_ASSERT_OK (mongo_helper_watch (writer_coll, &opts, collect_event, &ev, NULL, &err), err);
   ck_assert_int_eq (ev.n, 0);

   bson_destroy (&start);
   bson_destroy (&token);
}
END_TEST

/* ---- forced disconnects ---------------------------------------------------- */

#define SEQ_MAX 32

/* What the stream delivered, and the faults it injects on its way. */
typedef struct {
   int n;
   int want;
   char types[SEQ_MAX][12];
   int32_t ids[SEQ_MAX];
   mongoc_client_t *side; /* the test's own client: fail points, new writes */
   const char *db;
   const char *coll;
   const char *app;
   char failed[1024]; /* what went wrong inside the callback */
} seq_t;

static bool
side_command (seq_t *q, const char *json)
{
   bson_t cmd;
   bson_error_t e;
   bool ok = bson_init_from_json (&cmd, json, -1, &e) &&
             mongoc_client_command_simple (q->side, "admin", &cmd, NULL, NULL, &e);

   if (!ok && !q->failed[0]) {
      snprintf (q->failed, sizeof q->failed, "%s: %s", json, e.message);
   }
   bson_destroy (&cmd);
   return ok;
}

static bool
side_insert (seq_t *q, int32_t id)
{
   mongoc_collection_t *c = mongoc_client_get_collection (q->side, q->db, q->coll);
   bson_t *doc = BCON_NEW ("_id", BCON_INT32 (id));
   bson_error_t e;
   bool ok = mongoc_collection_insert_one (c, doc, NULL, NULL, &e);

   if (!ok && !q->failed[0]) {
      snprintf (q->failed, sizeof q->failed, "insert %d: %s", (int) id, e.message);
   }
   bson_destroy (doc);
   mongoc_collection_destroy (c);
   return ok;
}

/* After the 3rd, 6th and 9th event the next getMore fails three ways a
 * driver must resume from: the connection closed under it, an error after
 * the cursor was checked out (ResumableChangeStreamError from the server),
 * and an error the fail point labels resumable.  Each time a new document
 * is written too, so events also arrive after the resume. */
static bool
record_and_disrupt (const bson_t *ev, void *ud)
{
   seq_t *q = ud;
   bson_iter_t it;
   char json[400];

   if (q->n < SEQ_MAX) {
      if (bson_iter_init_find (&it, ev, "operationType")) {
         bson_strncpy (q->types[q->n], bson_iter_utf8 (&it, NULL), sizeof q->types[0]);
      }
      if (bson_iter_init (&it, ev) && bson_iter_find_descendant (&it, "documentKey._id", &it)) {
         q->ids[q->n] = bson_iter_int32 (&it);
      }
   }
   q->n++;
   switch (q->n) {
   case 3:
      snprintf (
         json,
         sizeof json,
         "{\"configureFailPoint\": \"failCommand\", \"mode\": {\"times\": 1}, \"data\": "
         "{\"failCommands\": [\"getMore\"], \"closeConnection\": true, \"appName\": \"%s\"}}",
         q->app);
      if (side_command (q, json)) {
         side_insert (q, 100);
      }
      break;
   case 6:
      if (side_command (q,
                        "{\"configureFailPoint\": \"failGetMoreAfterCursorCheckout\", \"mode\": "
                        "{\"times\": 1}, \"data\": {\"errorCode\": 10107}}")) {
         side_insert (q, 101);
      }
      break;
   case 9:
      snprintf (json,
                sizeof json,
                "{\"configureFailPoint\": \"failCommand\", \"mode\": {\"times\": 1}, \"data\": "
                "{\"failCommands\": [\"getMore\"], \"errorCode\": 91, \"errorLabels\": "
                "[\"ResumableChangeStreamError\"], \"appName\": \"%s\"}}",
                q->app);
      if (side_command (q, json)) {
         side_insert (q, 102);
      }
      break;
   default:
      break;
   }
   return !q->failed[0] && q->n < q->want;
}

START_TEST (watch_loses_and_repeats_no_event_across_forced_disconnects)
{
   mh_test_server_t srv = {0};
   mongo_helper_watch_opts_t opts = {0};
   events_t none = {0};
   seq_t q = {0};
   char app[64];
   const char *uri;
   bson_t start;
   mongoc_collection_t *c;
   bson_error_t e;
   /* What is written, in order: the test's writes before the stream is
    * read, then the callback's three inserts. */
   char want_types[SEQ_MAX][12];
   int32_t want_ids[SEQ_MAX];
   int want = 0;

   snprintf (app, sizeof app, "mh_watch_%ld", (long) getpid ());
   setenv ("MONGO_APP_NAME", app, 1);
   setenv ("MONGO_COMMAND_METRICS", "true", 1); /* the commands counted below */
   uri = replica_set (&srv);
   q.coll = mh_test_collection ("resumed");
   q.app = app;
   c = mh_test_raw_collection (q.coll);
   {
      bson_t empty = BSON_INITIALIZER;
      mongoc_collection_insert_one (c, &empty, NULL, NULL, NULL); /* create it */
      mongoc_collection_delete_many (c, &empty, NULL, NULL, NULL);
   }
   none.stop_after = 100;
   opts.timeout_ms = 300;
   if (!mongo_helper_watch (q.coll, &opts, collect_event, &none, &start, &err) &&
       err.code == 40573 && !mh_test_on_mock ()) {
      bson_destroy (&start);
      mongoc_collection_destroy (c);
      MH_SKIP ("the server at MONGO_TEST_URI is a standalone: change streams need a replica set");
   }
   MH_ASSERT_OK (err.category == MONGO_HELPER_ERROR_NONE, err);
   q.side = mongoc_client_new (uri);
   ck_assert_ptr_nonnull (q.side);
   if (!side_command (&q, "{\"configureFailPoint\": \"failCommand\", \"mode\": \"off\"}") &&
       !mh_test_on_mock ()) {
      mongoc_client_destroy (q.side);
      mongoc_collection_destroy (c);
      bson_destroy (&start);
      MH_SKIP ("the server at MONGO_TEST_URI refuses configureFailPoint (start mongod with "
               "--setParameter enableTestCommands=1)");
   }
   ck_assert_msg (!q.failed[0], "%s", q.failed);

   /* Inserts, updates and deletes, all before the stream is read. */
   for (int32_t i = 0; i < 8; i++) {
      bson_t *doc = BCON_NEW ("_id", BCON_INT32 (i), "v", BCON_INT32 (i));
      ck_assert_msg (mongoc_collection_insert_one (c, doc, NULL, NULL, &e), "%s", e.message);
      bson_destroy (doc);
      bson_strncpy (want_types[want], "insert", sizeof want_types[0]);
      want_ids[want++] = i;
      if (i % 3 == 2) {
         bson_t *sel = BCON_NEW ("_id", BCON_INT32 (i - 1));
         bson_t *upd = BCON_NEW ("$set", "{", "v", BCON_INT32 (-1), "}");
         ck_assert_msg (
            mongoc_collection_update_one (c, sel, upd, NULL, NULL, &e), "%s", e.message);
         bson_strncpy (want_types[want], "update", sizeof want_types[0]);
         want_ids[want++] = i - 1;
         ck_assert_msg (mongoc_collection_delete_one (c, sel, NULL, NULL, &e), "%s", e.message);
         bson_strncpy (want_types[want], "delete", sizeof want_types[0]);
         want_ids[want++] = i - 1;
         bson_destroy (sel);
         bson_destroy (upd);
      }
   }
   for (int32_t i = 100; i < 103; i++) {
      bson_strncpy (want_types[want], "insert", sizeof want_types[0]);
      want_ids[want++] = i;
   }
   ck_assert_int_le (want, SEQ_MAX);

   q.db = mongoc_database_get_name (mongo_helper_database (&err));
   q.want = want;
   mongo_helper_metrics_reset ();
   memset (&opts, 0, sizeof opts);
   opts.resume_after = &start;
   opts.batch_size = 2; /* several getMores, so the faults fall mid-stream */
   opts.max_await_time_ms = 200;
   opts.timeout_ms = 30000;
   MH_ASSERT_OK (mongo_helper_watch (q.coll, &opts, record_and_disrupt, &q, NULL, &err), err);
   ck_assert_msg (!q.failed[0], "in the callback: %s", q.failed);

   /* Every event once, in the order written. */
   ck_assert_int_eq (q.n, want);
   for (int i = 0; i < want; i++) {
      ck_assert_msg (strcmp (q.types[i], want_types[i]) == 0 && q.ids[i] == want_ids[i],
                     "event %d: expected %s of _id %d, got %s of _id %d",
                     i,
                     want_types[i],
                     (int) want_ids[i],
                     q.types[i],
                     (int) q.ids[i]);
   }
   /* The three faults happened and libmongoc resumed after each: three
    * failed getMores, one aggregate to open and three to resume. */
   ck_assert_int_eq (command_metric ("commands.getMore.failed"), 3);
   ck_assert_int_eq (command_metric ("commands.aggregate.succeeded"), 4);

   side_command (&q, "{\"configureFailPoint\": \"failCommand\", \"mode\": \"off\"}");
   mongoc_client_destroy (q.side);
   mongoc_collection_destroy (c);
   bson_destroy (&start);
}
END_TEST

Suite *
watch_suite (void)
{
   Suite *s = suite_create ("watch");
   TCase *core = tcase_create ("core");
   TCase *live = tcase_create ("live");

   tcase_add_checked_fixture (core, mh_test_offline_setup, mh_test_teardown);
   tcase_add_test (core, watch_rejects_bad_input_without_touching_the_server);
   suite_add_tcase (s, core);

   tcase_add_checked_fixture (live, mh_test_live_setup, mh_test_teardown);
   tcase_set_timeout (live, 60);
   tcase_add_test (live, watch_sends_change_stream_aggregate_and_reports_standalone_error);
   tcase_add_test (live, watch_delivers_events_in_order_with_update_lookup_and_resumes);
   tcase_add_test (live, watch_loses_and_repeats_no_event_across_forced_disconnects);
   suite_add_tcase (s, live);
   return s;
}
