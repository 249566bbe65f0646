/* src/watch.c: change streams.  "core" needs no server (bad input is
 * refused first).  Change streams need a replica set: against the test
 * server (a standalone) the exact command is captured at a private test
 * server instead, and the behavioural test runs only against a real
 * replica-set mongod (MONGO_TEST_URI). */
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

/* The behavioural test needs a replica set: a real mongod. */
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
   mongo_helper_watch_opts_t opts = {0};
   events_t ev = {0}, again = {0};
   bson_t start, token, token2;
   pthread_t t;
   void *wrote;

   if (mh_test_on_mock ()) {
      MH_SKIP ("change streams need a replica set; the mock server is a standalone "
               "(set MONGO_TEST_URI to a replica-set mongod)");
   }
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
   MH_ASSERT_OK (mongo_helper_watch (writer_coll, &opts, collect_event, &ev, &start, &err), err);
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
   suite_add_tcase (s, live);
   return s;
}
